"""The room list, creating rooms, the room page and older history."""

from __future__ import annotations

from urllib.parse import urlencode

from quart import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from quart.typing import ResponseReturnValue
from quart_auth import login_required

from chat import (
    admins,
    history,
    membership,
    moderation,
    people,
    presence,
    ratelimit,
    rooms,
    sessions,
    sidebar,
    sidebar_hub,
    store,
    timeline,
    unread,
)
from chat.clients import inbox_key
from chat.messages import CLIENT_ID, new_id, post_message
from chat.problems import Problem, ShownError, problem
from chat.sessions import Session, current_session
from chat.text import clean_body

bp = Blueprint("rooms", __name__)


async def signed_in() -> Session:
    session: Session | None = await current_session()
    if session is None:  # login_required has checked; this narrows the type
        abort(401)
    return session


@bp.get("/")
@login_required
async def index() -> str:
    """The person's rooms, and a form to make one."""
    session = await signed_in()
    return await render_template(
        "rooms/index.html",
        rooms=await rooms.of_person(store.redis(), session.person),
        session=session,
        sidebar=await sidebar.for_page(store.redis(), session),
    )


@bp.get("/rooms")
@login_required
async def all_rooms() -> str:
    """Every room, by name, a page at a time."""
    session = await signed_in()
    after = request.args.get("after")
    if after is not None and not rooms.is_slug(after):
        raise ShownError(400, "no_such_rooms_page")
    page, next_after = await rooms.page(store.redis(), after)
    return await render_template(
        "rooms/all.html",
        page=page,
        next_after=next_after,
        session=session,
        sidebar=await sidebar.for_page(store.redis(), session),
    )


@bp.post("/rooms")
@login_required
async def create() -> ResponseReturnValue:
    """Create a room (or open the one with that name)."""
    session = await signed_in()
    form = await request.form
    raw_name = form.get("name", "")
    try:
        name, slug = rooms.clean_name(raw_name)
    except rooms.RoomNameError as error:
        return await _create_refused(session, error.problem, raw_name, 400)
    config = current_app.config
    if form.get("private"):
        return await _create_private(session, name, raw_name)
    made = await rooms.create(
        store.redis(),
        name,
        slug,
        inbox_key(store.secret(), session.email),
        config["ROOMS_PER_PERSON_PER_HOUR"],
        config["MAX_ROOMS"],
    )
    if made.slug is None:
        assert made.problem is not None
        return await _create_refused(session, made.problem, raw_name, made.status)
    return _go(url_for("rooms.room", slug=made.slug))


async def _create_private(session: Session, name: str, raw_name: str) -> ResponseReturnValue:
    redis = store.redis()
    made_key = rooms.made_key(inbox_key(store.secret(), session.email))
    per_hour = current_app.config["ROOMS_PER_PERSON_PER_HOUR"]
    wait = await ratelimit.peek(redis, made_key, per_hour, 3600)
    if wait:
        refusal = problem("too_many_rooms_made", per_hour=per_hour, seconds=wait)
        return await _create_refused(session, refusal, raw_name, 429)
    await ratelimit.count(redis, made_key, 3600)
    slug = await membership.create_private(redis, name, session.person, session.display_name)
    await sidebar_hub.publish_event(session.person, "sidebar")
    return _go(url_for("rooms.room", slug=slug))


def _go(location: str) -> ResponseReturnValue:
    if request.headers.get("HX-Request"):
        return Response("", 200, headers={"HX-Redirect": location})
    return redirect(location, 303)


async def _create_refused(
    session: Session, refusal: Problem, name: str, status: int
) -> ResponseReturnValue:
    # Ticked stays ticked: a corrected name must not quietly make an open room.
    private = bool((await request.form).get("private"))
    if request.headers.get("HX-Request"):
        return await render_template(
            "rooms/_create_form.html", problem=refusal, name=name[:200], private=private
        ), status
    return await render_template(
        "rooms/index.html",
        rooms=await rooms.of_person(store.redis(), session.person),
        session=session,
        sidebar=await sidebar.for_page(store.redis(), session),
        problem=refusal,
        name=name[:200],
        private=private,
    ), status


@bp.get("/rooms/<slug>")
@login_required
async def room(slug: str) -> str:
    """A room: recent history, who is online, the compose form, live over a websocket; with
    `?at=<message id>`, the history around that message instead (a search result)."""
    session = await signed_in()
    redis = store.redis()
    found = await readable_or_404(session, slug)
    at = request.args.get("at")
    if at is not None:
        return await _around(session, found, at)
    if found.kind == membership.OPEN:
        if await rooms.remember(redis, session.person, slug):  # new in their list: other tabs
            await sidebar_hub.publish_event(session.person, "sidebar")
        await membership.note_visit(redis, slug, session.person, session.display_name)
    epoch = await history.epoch(redis, slug)
    shown = await timeline.page(redis, slug)
    # What the page shows is read (the socket, once open, keeps it so).
    seq = (await unread.latest(redis, [slug]))[slug]
    await unread.mark_read(redis, session.person, slug, seq)
    await sidebar_hub.publish_event(session.person, "read", slug, seq)
    return await _room_page(
        session,
        found,
        messages=shown.messages,
        older=shown.older,
        # A relative URL: behind a TLS proxy the browser turns it into wss:// itself.
        socket_url=f"/rooms/{slug}/ws?"
        + urlencode({"after": shown.newest or "0-0", "epoch": epoch}),
    )


async def _around(session: Session, found: membership.Room, at: str) -> str:
    """The room's history around one message, not live: a link leads back to the latest."""
    entry_id = history.parse_id(at)
    if entry_id is None:
        raise ShownError(400, "not_a_message_id")
    shown = await timeline.around(store.redis(), found.slug, entry_id)
    if not any(m.id == at for m in shown.messages):
        raise ShownError(404, "no_such_message")
    return await _room_page(
        session, found, messages=shown.messages, older=shown.older, found_id=at, newer=shown.newer
    )


async def _room_page(session: Session, found: membership.Room, **shown: object) -> str:
    redis = store.redis()
    users, total = await presence.online(redis, found.slug)
    return await render_template(
        "rooms/room.html",
        slug=found.slug,
        room=found,
        name=found.title_for(session.person),
        users=users,
        total=total,
        session=session,
        room_sidebar=await sidebar.for_page(redis, session, found.slug),
        is_admin=admins.is_admin(session.email),
        rules=await moderation.rules(redis, found.slug),
        **shown,
    )


async def readable_or_404(session: Session, slug: str) -> membership.Room:
    """The room if this person may read it; 404 otherwise (a private room stays unknown)."""
    found = await membership.readable(store.redis(), slug, session.person)
    if found is None:
        abort(404)
    return found


@bp.get("/rooms/<slug>/older")
@login_required
async def older(slug: str) -> str:
    """The page of messages before `before`, with its own "Load older" button."""
    session = await signed_in()
    before = history.parse_id(request.args.get("before"))
    if before is None:
        raise ShownError(400, "not_a_message_id")
    await readable_or_404(session, slug)
    shown = await timeline.page(store.redis(), slug, before)
    return await render_template(
        "rooms/_older.html", slug=slug, messages=shown.messages, older=shown.older
    )


@bp.post("/rooms/<slug>/messages")
@login_required
async def post(slug: str) -> ResponseReturnValue:
    """Send without JavaScript: a plain form post, then back to the room."""
    session = await signed_in()
    found = await readable_or_404(session, slug)
    form = await request.form
    body = clean_body(form.get("body", ""))
    limit = current_app.config["MAX_MESSAGE_CHARS"]
    if len(body) > limit:
        raise ShownError(400, "message_too_long", limit=limit, length=len(body))
    if body:
        # The same per-session rate as the socket: one bucket, whichever way a message comes.
        wait = await sessions.take_send_token(store.redis(), session)
        if wait < 0:
            return redirect(url_for("auth.login"), 303)
        if wait > 0:
            raise ShownError(429, "sending_too_fast_form")
        admin = admins.is_admin(session.email)
        refused = await moderation.refusal(store.redis(), slug, session.person, admin)
        if refused is not None:
            status = 403 if refused.kind == "room_admins_only" else 429
            raise ShownError(status, refused.kind, **refused.args)
        client_id = form.get("client_id", "")
        await post_message(
            found, session, body, client_id if CLIENT_ID.fullmatch(client_id) else new_id()
        )
    return redirect(url_for("rooms.room", slug=slug), 303)


@bp.get("/me.css")
@login_required
async def my_style() -> Response:
    """Highlights this person's own messages; a stylesheet because the CSP forbids inline style."""
    session = await signed_in()
    css = await render_template(
        "rooms/me.css",
        me=session.person,
        legacy=people.legacy_tag(session.email),
        admin=admins.is_admin(session.email),
    )
    return Response(css, mimetype="text/css", headers={"Cache-Control": "private, no-store"})
