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

from chat import history, people, presence, rooms, sessions, store
from chat.clients import inbox_key
from chat.messages import CLIENT_ID, new_id, post_message
from chat.problems import Problem, ShownError
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
        rooms=await rooms.of_person(store.redis(), session.person),
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
    location = url_for("rooms.room", slug=made.slug)
    if request.headers.get("HX-Request"):
        return Response("", 200, headers={"HX-Redirect": location})
    return redirect(location, 303)


async def _create_refused(
    session: Session, refusal: Problem, name: str, status: int
) -> ResponseReturnValue:
    if request.headers.get("HX-Request"):
        return await render_template(
            "rooms/_create_form.html", problem=refusal, name=name[:200]
        ), status
    return await render_template(
        "rooms/index.html",
        rooms=await rooms.of_person(store.redis(), session.person),
        session=session,
        problem=refusal,
        name=name[:200],
    ), status


@bp.get("/rooms/<slug>")
@login_required
async def room(slug: str) -> str:
    """A room: recent history, who is online, the compose form, live over a websocket."""
    session = await signed_in()
    redis = store.redis()
    name = await rooms.name_of(redis, slug)
    if name is None:
        abort(404)
    await rooms.remember(redis, session.person, slug)
    epoch = await history.epoch(redis, slug)
    messages = await history.recent(redis, slug)
    return await render_template(
        "rooms/room.html",
        slug=slug,
        name=name,
        messages=messages,
        has_older=len(messages) == history.PAGE,
        users=await presence.online(redis, slug),
        session=session,
        rooms=await rooms.of_person(redis, session.person),
        # A relative URL: behind a TLS proxy the browser turns it into wss:// itself.
        socket_url=f"/rooms/{slug}/ws?"
        + urlencode({"after": messages[-1].id if messages else "0-0", "epoch": epoch}),
    )


@bp.get("/rooms/<slug>/older")
@login_required
async def older(slug: str) -> str:
    """The page of messages before `before`, with its own "Load older" button."""
    before = history.parse_id(request.args.get("before"))
    if before is None:
        raise ShownError(400, "not_a_message_id")
    if await rooms.name_of(store.redis(), slug) is None:
        abort(404)
    messages = await history.before(store.redis(), slug, before)
    return await render_template(
        "rooms/_older.html", slug=slug, messages=messages, has_older=len(messages) == history.PAGE
    )


@bp.post("/rooms/<slug>/messages")
@login_required
async def post(slug: str) -> ResponseReturnValue:
    """Send without JavaScript: a plain form post, then back to the room."""
    session = await signed_in()
    if await rooms.name_of(store.redis(), slug) is None:
        abort(404)
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
        client_id = form.get("client_id", "")
        await post_message(
            slug, session, body, client_id if CLIENT_ID.fullmatch(client_id) else new_id()
        )
    return redirect(url_for("rooms.room", slug=slug), 303)


@bp.get("/me.css")
@login_required
async def my_style() -> Response:
    """Highlights this person's own messages; a stylesheet because the CSP forbids inline style."""
    session = await signed_in()
    css = await render_template(
        "rooms/me.css", me=session.person, legacy=people.legacy_tag(session.email)
    )
    return Response(css, mimetype="text/css", headers={"Cache-Control": "private, no-store"})
