"""Unread counts from two numbers: a room's message count and a person's last-read mark.

Every message posted to a room takes the next number of the room's counter `{r:<room>}:seq`
(in the post script, one INCR whatever the room's size); a person's mark for the room is the
number of the last message they saw (`{p:<id>}:read`, room -> number). Unread is the
difference: nothing is written for each member when a message is posted. Mentions of a person
are the few per-person writes (bounded by the mentions in one message, never by room size):
`{p:<id>}:mentions`, members "room\\x1fnumber", newest kept.
`{p:<id>}:seen` holds when a socket of the person was last open (seconds): the missed-mention
email asks it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from redis.asyncio import Redis

from chat.people import person_key

SEP = "\x1f"
KEEP_MENTIONS = 500
SHOWN_MAX = 99  # past this the sidebar says "99+"


def seq_key(slug: str) -> str:
    return f"{{r:{slug}}}:seq"


def marks_key(person: str) -> str:
    return person_key(person, "read")


def mentions_key(person: str) -> str:
    return person_key(person, "mentions")


def seen_key(person: str) -> str:
    return person_key(person, "seen")


# Marks only move forward: a tab closing late must not bring back what another tab read.
# KEYS: marks. ARGV: room, number.
_MARK = """
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > old then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 0
"""


async def mark_read(redis: Redis, person: str, slug: str, seq: int) -> None:
    await redis.eval(_MARK, 1, marks_key(person), slug, seq)


async def mark_many(redis: Redis, marks: list[tuple[str, str, int]]) -> None:
    """(person, room, number) marks in one round trip."""
    if marks:
        async with redis.pipeline(transaction=False) as pipe:
            for person, slug, seq in marks:
                pipe.eval(_MARK, 1, marks_key(person), slug, seq)
            await pipe.execute()


async def latest(redis: Redis, slugs: Iterable[str]) -> dict[str, int]:
    """The number of the newest message of each room (0 before the first)."""
    slugs = list(slugs)
    if not slugs:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for slug in slugs:
            pipe.get(seq_key(slug))
        values = await pipe.execute()
    return {slug: int(value or 0) for slug, value in zip(slugs, values, strict=True)}


async def marks(redis: Redis, person: str) -> dict[str, int]:
    raw: dict[str, str] = await redis.hgetall(marks_key(person))
    return {slug: int(value) for slug, value in raw.items() if value.isascii() and value.isdigit()}


async def mark_of(redis: Redis, person: str, slug: str) -> int:
    value = await redis.hget(marks_key(person), slug)
    return int(value) if value and value.isascii() and value.isdigit() else 0


async def mentions(redis: Redis, person: str) -> list[tuple[str, int]]:
    """(room, number) of the person's recent mentions, oldest first."""
    members: list[str] = await redis.zrange(mentions_key(person), 0, -1)
    found = []
    for member in members:
        slug, _, number = member.rpartition(SEP)
        if slug and number.isdigit():
            found.append((slug, int(number)))
    return found


async def add_mentions(redis: Redis, persons: Iterable[str], slug: str, seq: int) -> None:
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        for person in persons:
            key = mentions_key(person)
            pipe.zadd(key, {f"{slug}{SEP}{seq}": now})
            pipe.zremrangebyrank(key, 0, -(KEEP_MENTIONS + 1))
        await pipe.execute()


async def forget_room(redis: Redis, person: str, slug: str) -> None:
    """Leaving a room drops its mark and mentions."""
    await redis.hdel(marks_key(person), slug)
    stale = [m for m in await redis.zrange(mentions_key(person), 0, -1) if m.startswith(slug + SEP)]
    if stale:
        await redis.zrem(mentions_key(person), *stale)


async def note_seen(redis: Redis, persons: Iterable[str]) -> None:
    """These people have a socket open now (called on connect, heartbeat and close)."""
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        for person in set(persons):
            pipe.set(seen_key(person), repr(now), ex=30 * 86400)
        await pipe.execute()


async def last_seen(redis: Redis, person: str) -> float:
    value = await redis.get(seen_key(person))
    try:
        return float(value) if value else 0.0
    except ValueError:
        return 0.0


def shown(count: int) -> str:
    return f"{SHOWN_MAX}+" if count > SHOWN_MAX else str(count)
