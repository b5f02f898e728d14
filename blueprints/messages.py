"""One message: edit and delete (inline with htmx, plain pages without), and reactions."""

from __future__ import annotations

from urllib.parse import quote

from quart import Blueprint, Response, current_app, redirect, render_template, request
from quart.typing import ResponseReturnValue
from quart_auth import login_required

from blueprints import errors
from chat import admins, changes, history, membership, moderation, sessions, store, versions
from chat.history import Message
from chat.problems import Problem, ShownError, problem
from chat.sessions import Session, current_session
from chat.text import clean_body

bp = Blueprint("messages", __name__)

MESSAGE = "/rooms/<slug>/messages/<message_id>"


@bp.errorhandler(ShownError)
async def refused(error: ShownError) -> ResponseReturnValue:
    """With htmx, why it did not happen goes to the room's status line and the message stays
    as it is (htmx 4 would swap an error page in its place); without, the error page."""
    if not request.headers.get("HX-Request"):
        return await errors.page(error.status, error.problem), error.status
    html = await render_template("rooms/_compose_error.html", problem=error.problem)
    return html, error.status, {"HX-Reswap": "none"}


async def _context(slug: str, message_id: str) -> tuple[Session, membership.Room]:
    """The signed-in person and the room, if they may read it (404 otherwise)."""
    session = await current_session()
    if session is None:
        raise ShownError(401, "start_again")
    parsed = history.parse_id(message_id)
    if parsed is None or f"{parsed[0]}-{parsed[1]}" != message_id:  # one spelling per id
        raise ShownError(400, "not_a_message_id")
    room = await membership.readable(store.redis(), slug, session.person)
    if room is None:
        raise ShownError(404, "no_such_message")
    return session, room


async def _message(slug: str, message_id: str) -> Message:
    found = await versions.current(store.redis(), slug, message_id)
    if found is None:
        raise ShownError(404, "no_such_message")
    return found


def _back_to(slug: str, message_id: str) -> Response:
    """Without JavaScript: back to the room, at the message."""
    return redirect(f"/rooms/{quote(slug)}#m-{message_id}", 303)  # type: ignore[return-value]


async def _take_turn(session: Session) -> None:
    """Every change spends the session's send rate: one bucket for whatever a person posts."""
    wait = await sessions.take_send_token(store.redis(), session)
    if wait < 0:
        raise ShownError(401, "start_again")
    if wait > 0:
        raise ShownError(429, "sending_too_fast_form")


@bp.get(MESSAGE)
@login_required
async def show(slug: str, message_id: str) -> ResponseReturnValue:
    """The message as it is now; with ?do=edit its edit form, with ?do=delete "Delete this
    message?" (inline with htmx, a page of its own without)."""
    session, room = await _context(slug, message_id)
    step = request.args.get("do")
    if step is None:
        if not request.headers.get("HX-Request"):
            return _back_to(slug, message_id)
        return await render_template(
            "rooms/_message.html", m=await _message(slug, message_id), slug=slug
        )
    message = await _message(slug, message_id)
    if step == "edit":
        if message.person != session.person:
            raise ShownError(403, "not_your_message")
        if message.deleted:
            raise ShownError(409, "message_deleted")
        return await _form("rooms/_edit_form.html", room, message, body=message.body)
    if step == "delete":
        if message.person != session.person and not admins.is_admin(session.email):
            raise ShownError(403, "not_your_message")
        return await _form("rooms/_delete_form.html", room, message)
    raise ShownError(400, "not_understood")


@bp.post(MESSAGE + "/edit")
@login_required
async def edit(slug: str, message_id: str) -> ResponseReturnValue:
    """Save an edit: everyone sees the new text, marked "(edited)"."""
    session, room = await _context(slug, message_id)
    message = await _message(slug, message_id)
    if message.person != session.person:
        raise ShownError(403, "not_your_message")
    body = clean_body((await request.form).get("body", ""))
    limit = int(current_app.config["MAX_MESSAGE_CHARS"])
    refusal: Problem | None = None
    if not body:
        refusal = problem("edit_empty")
    elif len(body) > limit:
        refusal = problem("message_too_long", limit=limit, length=len(body))
    if refusal is not None:
        return await _form(
            "rooms/_edit_form.html", room, message, body=body[:limit], problem=refusal
        ), 400
    await _writable(room, session)
    await _take_turn(session)
    changed = await changes.edit(room, session.person, message_id, body)
    return await _done(slug, changed)


@bp.post(MESSAGE + "/delete")
@login_required
async def delete(slug: str, message_id: str) -> ResponseReturnValue:
    """Delete: everyone sees "Message deleted"; the text is gone from the server."""
    session, room = await _context(slug, message_id)
    admin = admins.is_admin(session.email)
    await _take_turn(session)
    changed = await changes.delete(room, session.person, message_id, admin)
    if admin and changed.person != session.person:
        await admins.record(
            store.redis(), session.email, "delete_message", slug, message=message_id
        )
    return await _done(slug, changed)


@bp.post(MESSAGE + "/react")
@login_required
async def react(slug: str, message_id: str) -> ResponseReturnValue:
    """Press a reaction ("on") or take it back ("off"); counts change for everyone live."""
    session, room = await _context(slug, message_id)
    form = await request.form
    on, off = form.get("on"), form.get("off")
    if (on is None) == (off is None):
        raise ShownError(400, "unknown_reaction")
    await _writable(room, session)
    await _take_turn(session)
    await changes.react(
        room, session.person, session.display_name, message_id, on or off or "", on is not None
    )
    if request.headers.get("HX-Request"):
        return "", 204  # the live push shows it, here as everywhere
    return _back_to(slug, message_id)


async def _writable(room: membership.Room, session: Session) -> None:
    """Edits and reactions follow the room's rules (chat/moderation.py)."""
    refused = await moderation.change_refusal(
        store.redis(), room.slug, admins.is_admin(session.email)
    )
    if refused is not None:
        raise ShownError(403, refused.kind)


async def _form(template: str, room: membership.Room, message: Message, **context: object) -> str:
    if request.headers.get("HX-Request"):
        return await render_template(template, m=message, slug=room.slug, **context)
    return await render_template(
        "rooms/message_page.html", form=template, m=message, slug=room.slug, **context
    )


async def _done(slug: str, changed: Message) -> ResponseReturnValue:
    if request.headers.get("HX-Request"):
        return await render_template("rooms/_message.html", m=changed, slug=slug)
    return _back_to(slug, changed.id)
