"""Downloading a room's whole history: members of the room, and admins for every room."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from urllib.parse import quote

from quart import (
    Blueprint,
    Response,
    abort,
    current_app,
    render_template,
    stream_with_context,
)
from quart_auth import login_required

from blueprints.rooms import signed_in
from chat import admins, export, labels, membership, ratelimit, sidebar, store
from chat.history import Message
from chat.people import person_key
from chat.problems import ShownError
from chat.sessions import Session

bp = Blueprint("export", __name__)

FORMATS = {"jsonl": "application/x-ndjson", "txt": "text/plain"}


async def exportable(session: Session, slug: str) -> membership.Room:
    """The room if this person may export it; 404 otherwise (a private room stays unknown)."""
    redis = store.redis()
    found = await membership.readable(redis, slug, session.person)
    if found is None and admins.is_admin(session.email):
        found = await membership.any_room(redis, slug)
    if found is None:
        abort(404)
    return found


@bp.get("/rooms/<slug>/export")
@login_required
async def choose(slug: str) -> str:
    """The two formats to download."""
    session = await signed_in()
    found = await exportable(session, slug)
    return await render_template(
        "export/choose.html",
        slug=slug,
        name=found.title_for(session.person),
        session=session,
        sidebar=await sidebar.for_page(store.redis(), session),
    )


@bp.get("/rooms/<slug>/export.<fmt>")
@login_required
async def download(slug: str, fmt: str) -> Response:
    """The room's history, streamed as it is read (never built whole in memory)."""
    session = await signed_in()
    if fmt not in FORMATS:
        abort(404)
    await exportable(session, slug)
    per_hour = current_app.config["EXPORTS_PER_HOUR"]
    key = person_key(session.person, "exports")
    wait = await ratelimit.fixed_window(store.redis(), key, per_hour, 3600)
    if wait:
        raise ShownError(429, "exporting_too_often", per_hour=per_hour, seconds=wait)
    deleted_word = labels.word("deleted")  # in the viewer's language, before streaming
    line: Callable[[Message], str] = (
        export.as_json_line if fmt == "jsonl" else (lambda m: export.as_text_line(m, deleted_word))
    )

    @stream_with_context
    async def lines() -> AsyncIterator[bytes]:
        async for message in export.messages(store.redis(), slug):
            yield line(message).encode()

    return Response(
        lines(),
        mimetype=FORMATS[fmt],
        headers={
            "Content-Disposition": _attachment(f"{slug}-history.{fmt}"),
            "Cache-Control": "private, no-store",
        },
    )


def _attachment(filename: str) -> str:
    """A download's name; a room named in any script keeps its name (RFC 6266 filename*)."""
    if filename.isascii():
        return f'attachment; filename="{filename}"'
    fallback = "room-history." + filename.rpartition(".")[2]
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
