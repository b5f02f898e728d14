"""What a room socket sends besides messages: backfill, presence notices, the Online list."""

from __future__ import annotations

import asyncio
import logging

from quart import Quart, current_app
from redis.asyncio import Redis

from chat import bus, i18n, keys, online_lists, people, presence, store, timeline
from chat.fragments import render_fragment
from chat.localize import template_payload
from chat.messages import render_frame, room_channel

log = logging.getLogger("chat.presence")

# A client that missed more than this gets the latest page in place of its list.
BACKFILL_LIMIT = 500
# A room with more people online than this gets its Online list at most once every
# LIST_SECONDS: each arrival and departure is told at once, the list follows. The list (up to
# 100 names, some 30 KB) goes to every socket of the room, so in a big room filling up after a
# restart, a list per arrival cost O(sockets x arrivals) in writes.
LIST_EVERY_CHANGE_UP_TO = 50
LIST_SECONDS = 2.0


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
    # The list is read only when it goes out: in a big room most notices go without it.
    big = await presence.how_many(redis, slug) > LIST_EVERY_CHANGE_UP_TO
    if not big or await _list_now(redis, slug):
        users, total = await presence.online(redis, slug)
        payload = template_payload(
            "rooms/_presence_frame.html", notice=verb, name=name, users=users, total=total
        )
    else:
        payload = template_payload("rooms/_notice.html", notice=verb, name=name)
        # One worker sends the list when the window ends; if it dies first, the key expires
        # and the next arrival or departure sends it.
        if await redis.set(keys.room(slug, "online-due"), "1", nx=True, px=_ms(3 * LIST_SECONDS)):
            current_app.add_background_task(_list_later, slug)
    await bus.bus().publish(room_channel(slug), "\n" + payload)


async def _list_now(redis: Redis, slug: str) -> bool:
    """True if no list went to the room within LIST_SECONDS (this one opens a new window)."""
    return bool(await redis.set(keys.room(slug, "online-sent"), "1", nx=True, px=_ms(LIST_SECONDS)))


async def _list_later(slug: str) -> None:
    await asyncio.sleep(LIST_SECONDS)
    try:
        await store.redis().delete(keys.room(slug, "online-due"))
        await refresh_online(slug)
    except store.REDIS_DOWN as error:  # the room's next arrival or departure sends it
        log.warning("online list of room %s not sent: %s", slug, error)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


async def refresh_online(slug: str) -> None:
    """Send the room (every worker) its Online list again: someone in it was renamed, or a big
    room's list is due."""
    users, total = await presence.online(store.redis(), slug)
    payload = template_payload("rooms/_online.html", users=users, total=total, oob=True)
    await bus.bus().publish(room_channel(slug), "\n" + payload)


async def announce_departures(app: Quart, slug: str, users: list[str]) -> None:
    async with app.app_context():
        for user in users:
            await announce(slug, user, "left")
