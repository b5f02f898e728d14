"""The room list, creating rooms, the room page and older history."""

from __future__ import annotations

import re
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

from chat import history, presence, rooms, store
from chat.messages import CLIENT_ID, author_tag, new_id, post_message
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
    """The list of rooms."""
    session = await signed_in()
    return await render_template(
        "rooms/index.html", rooms=await rooms.all_rooms(store.redis()), session=session
    )


@bp.post("/rooms")
@login_required
async def create() -> ResponseReturnValue:
    """Create a room (or open the one with that name)."""
    form = await request.form
    try:
        name, slug = rooms.clean_name(form.get("name", ""))
    except rooms.RoomNameError as error:
        if request.headers.get("HX-Request"):
            return await render_template(
                "rooms/_create_form.html", error=str(error), name=form.get("name", "")[:200]
            ), 400
        session = await signed_in()
        return await render_template(
            "rooms/index.html",
            rooms=await rooms.all_rooms(store.redis()),
            session=session,
            error=str(error),
            name=form.get("name", "")[:200],
        ), 400
    await rooms.create(store.redis(), name, slug)
    location = url_for("rooms.room", slug=slug)
    if request.headers.get("HX-Request"):
        return Response("", 200, headers={"HX-Redirect": location})
    return redirect(location, 303)


@bp.get("/rooms/<slug>")
@login_required
async def room(slug: str) -> str:
    """A room: recent history, who is online, the compose form, live over a websocket."""
    session = await signed_in()
    redis = store.redis()
    name = await rooms.name_of(redis, slug)
    if name is None:
        abort(404)
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
        rooms=await rooms.all_rooms(redis),
        me=author_tag(session.email),
        # A relative URL: behind a TLS proxy the browser turns it into wss:// itself.
        socket_url=f"/rooms/{slug}/ws?"
        + urlencode({"after": messages[-1].id if messages else "0-0", "epoch": epoch}),
    )


@bp.get("/rooms/<slug>/older")
@login_required
async def older(slug: str) -> str:
    """The page of messages before `before`, with its own "Load older" button."""
    before = request.args.get("before", "")
    if not re.fullmatch(history.STREAM_ID, before):
        abort(400)
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
        abort(400, description=f"Not sent: messages are at most {limit:,} characters.")
    if body:
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
    css = await render_template("rooms/me.css", me=author_tag(session.email))
    return Response(css, mimetype="text/css", headers={"Cache-Control": "private, no-store"})
