"""Everyone who has signed in (/people), one person's page (/people/<id>), and starting a
direct conversation (/direct). Addresses are shown to admins only."""

from __future__ import annotations

import re

from quart import Blueprint, current_app, redirect, render_template, request, url_for
from quart.typing import ResponseReturnValue
from quart_auth import login_required
from redis.asyncio import Redis

from blueprints.rooms import signed_in
from chat import admins, membership, people, ratelimit, rooms, sidebar, sidebar_hub, store
from chat.clients import inbox_key
from chat.problems import ShownError
from chat.text import clean_line
from chat.to_the_end import to_the_end

bp = Blueprint("people", __name__)

PERSON_ID = re.compile(r"^[0-9a-f]{16}$")
MAX_QUERY_CHARS = 64


@bp.get("/people")
@login_required
async def index() -> str:
    """Everyone who has signed in, by name, 50 at a time; "Find people" narrows by name."""
    session = await signed_in()
    query = clean_line(request.args.get("q", ""))[:MAX_QUERY_CHARS]
    after = request.args.get("after")
    if after is not None and not _is_cursor(after):
        raise ShownError(400, "no_such_people_page")
    rows, next_after = await people.directory(store.redis(), query, after)
    return await render_template(
        "people/index.html",
        rows=rows,
        query=query,
        next_after=next_after,
        session=session,
        is_admin=admins.is_admin(session.email),
        sidebar=await sidebar.for_page(store.redis(), session),
    )


@bp.get("/people/<person>")
@login_required
async def profile_page(person: str) -> str:
    """One person's page: their name, and a link to write to them."""
    session = await signed_in()
    found = await people.profile(store.redis(), person) if PERSON_ID.match(person) else None
    if found is None:
        raise ShownError(404, "no_such_person")
    return await render_template(
        "people/person.html",
        profile=found,
        session=session,
        is_admin=admins.is_admin(session.email),
        sidebar=await sidebar.for_page(store.redis(), session),
    )


def _is_cursor(text: str) -> bool:
    name, sep, person = text.rpartition(people.SEP)
    return bool(sep) and len(name) <= 254 and bool(PERSON_ID.match(person))


@bp.get("/direct")
@login_required
async def direct() -> ResponseReturnValue:
    """Open the direct conversation with these people (made the first time): a plain link."""
    session = await signed_in()
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        # A link on another site must not start conversations in a signed-in person's name.
        raise ShownError(403, "cross_site_link")
    wanted = request.args.getlist("with")
    if len(wanted) > 2 * membership.MAX_DIRECT or not all(PERSON_ID.match(p) for p in wanted):
        raise ShownError(404, "no_such_person")
    others = sorted(set(wanted) - {session.person})
    if not others:
        raise ShownError(400, "direct_needs_someone")
    if len(others) + 1 > membership.MAX_DIRECT:
        raise ShownError(400, "direct_too_many", limit=membership.MAX_DIRECT)
    redis = store.redis()
    found = await people.profiles_of(redis, others)
    if len(found) != len(others):
        raise ShownError(404, "no_such_person")
    names = {pid: profile.name for pid, profile in found.items()}
    names[session.person] = session.display_name
    slug = membership.direct_slug(store.secret(), names)
    # A GET that changes things: what it starts runs to the end even if the browser goes away
    # (a conversation half made would stay so; its count against the cap must not be skipped).
    if await membership.direct_is_whole(redis, slug):
        await to_the_end(membership.open_direct(redis, store.secret(), names, session.person))
    else:
        # A new conversation counts against the same hourly cap as making a room.
        made_key = rooms.made_key(inbox_key(store.secret(), session.email))
        per_hour = current_app.config["ROOMS_PER_PERSON_PER_HOUR"]
        wait = await ratelimit.peek(redis, made_key, per_hour, 3600)
        if wait:
            raise ShownError(429, "too_many_rooms_made", per_hour=per_hour, seconds=wait)
        slug = await to_the_end(_start_direct(redis, names, session.person, made_key))
    return redirect(url_for("rooms.room", slug=slug), 303)


async def _start_direct(redis: Redis, names: dict[str, str], starter: str, made_key: str) -> str:
    """The conversation made, counted against the cap, and shown in everyone's sidebar."""
    slug, made = await membership.open_direct(redis, store.secret(), names, starter)
    if made:
        await ratelimit.count(redis, made_key, 3600)
        for person in names:  # it appears in everyone's sidebar at once
            await sidebar_hub.publish_event(person, "sidebar")
    return slug
