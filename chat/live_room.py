"""What a room socket sends besides messages: backfill, presence notices, the Online list."""

from __future__ import annotations

from quart import Quart, current_app

from chat import bus, i18n, online_lists, people, presence, store, timeline
from chat.fragments import render_fragment
from chat.localize import template_payload
from chat.messages import render_frame, room_channel

# A client that missed more than this gets the latest page in place of its list.
BACKFILL_LIMIT = 500


async def backfill_frame(slug: str, last_id: str | None) -> tuple[str | None, str | None]:
    """(frame, newest id) for what a client that has seen `last_id` is missing."""
    redis = store.redis()
    if last_id is None:
        page = await timeline.page(redis, slug)
        if not page.messages:
            return None, page.newest
        html = await render_fragment(
            "rooms/_history_frame.html",
            messages=page.messages,
            slug=slug,
            older=page.older,
        )
        return html, page.newest
    missed = await timeline.since(redis, slug, last_id, BACKFILL_LIMIT)
    if missed is None:
        return await backfill_frame(slug, None)
    if not missed.new and not missed.updated:
        return None, missed.newest
    return await render_frame(slug, missed.new, missed.updated), missed.newest


async def empty_history_frame() -> str:
    return await render_fragment("rooms/_history_frame.html", messages=[], slug="", older=None)


async def online_frame(slug: str) -> str:
    """Who is online, for a socket that has just subscribed to the room (chat/online_lists.py
    keeps it per worker and variant until the list changes)."""

    async def render() -> str:
        users, total = await presence.online(store.redis(), slug)
        return await render_fragment("rooms/_online.html", users=users, total=total, oob=True)

    return await online_lists.of(current_app).frame(slug, i18n.current(), render)


async def announce(slug: str, user: str, verb: str) -> None:
    """Tell the room (every worker) that `user` joined or left, with the new Online list.

    The notice has words, so it goes out as a template that each worker renders once per
    language and time zone among its sockets (chat/localize.py).
    """
    redis = store.redis()
    person = presence.person_of(user)
    found = await people.profile(redis, person)
    name = found.name if found is not None else ""
    users, total = await presence.online(redis, slug)
    payload = template_payload(
        "rooms/_presence_frame.html", notice=verb, name=name, users=users, total=total
    )
    await bus.bus().publish(room_channel(slug), "\n" + payload)


async def refresh_online(slug: str) -> None:
    """Send the room (every worker) its Online list again: someone in it was renamed."""
    users, total = await presence.online(store.redis(), slug)
    payload = template_payload("rooms/_online.html", users=users, total=total, oob=True)
    await bus.bus().publish(room_channel(slug), "\n" + payload)


async def announce_departures(app: Quart, slug: str, users: list[str]) -> None:
    async with app.app_context():
        for user in users:
            await announce(slug, user, "left")
