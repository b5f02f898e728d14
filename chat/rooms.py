"""The room registry: slug -> display name, names in order for paging, and who opened what.

Keys: `rooms` (hash slug -> name), `{rooms}:by-name` (sorted set "folded name\\x1fslug", for
paging), `{rooms}:skeletons` (hash confusable skeleton -> slug); all three share one cluster
slot. Per person, `{p:<id>}:rooms` (slug -> when last opened) is the sidebar's list.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import unicodedata
from dataclasses import dataclass

from quart import Quart
from redis.asyncio import Redis

from chat import confusables, ratelimit, store
from chat.people import person_key, reindex_directory
from chat.problems import Problem, problem
from chat.text import clean_line

DEFAULT_ROOM = "general"
MAX_NAME_CHARS = 60
MAX_SLUG_CHARS = MAX_NAME_CHARS  # a slug is never cut shorter than its name
PAGE = 50
SIDEBAR_ROOMS = 50
_KEY = "rooms"
_BY_NAME = "{rooms}:by-name"
_SKELETONS = "{rooms}:skeletons"
SEP = "\x1f"
# Private rooms and direct conversations (chat/membership.py) have ids of this shape.
MEMBER_ROOM = re.compile(r"^[pd]-[0-9a-f]{16}$")
log = logging.getLogger("chat.rooms")


class RoomNameError(ValueError):
    def __init__(self, kind: str, **args: object) -> None:
        super().__init__(kind)
        self.problem = problem(kind, **args)


@dataclass(frozen=True)
class Creation:
    """What asking for a room gave: its slug (new or existing) or why there is none."""

    slug: str | None = None
    problem: Problem | None = None
    status: int = 200


def slugify(name: str) -> str:
    """Letters, marks and digits of every script (技术讨论, привет, हिन्दी) kept, Latin
    accents folded away (Café -> cafe, so older Latin slugs stay as they were), the rest "-"."""
    decomposed = unicodedata.normalize("NFKD", name.lower())
    kept: list[str] = []
    for char in decomposed:
        category = unicodedata.category(char)
        if category[0] == "M":
            # A mark on an ASCII letter is an accent to fold; elsewhere (й, हि) it is part of
            # the letter.
            if kept and kept[-1] != "-" and not kept[-1].isascii():
                kept.append(char)
        elif category[0] in "LN":
            kept.append(char)
        elif kept and kept[-1] != "-":
            kept.append("-")
    slug = unicodedata.normalize("NFC", "".join(kept)).strip("-")
    return slug[:MAX_SLUG_CHARS].strip("-")


def is_slug(text: str) -> bool:
    """Could this be one of our slugs? (No need to ask Redis about anything else.)"""
    return 0 < len(text) <= MAX_SLUG_CHARS and slugify(text) == text


def clean_name(raw: str) -> tuple[str, str]:
    """(display name, slug) for a requested room name, or RoomNameError saying why not."""
    name = clean_line(raw)
    if not name:
        raise RoomNameError("room_name_empty")
    if len(name) > MAX_NAME_CHARS:
        raise RoomNameError("room_name_too_long", limit=MAX_NAME_CHARS)
    slug = slugify(name)
    if not slug:
        raise RoomNameError("room_name_no_letters")
    if MEMBER_ROOM.match(slug):  # the shape of private rooms' and conversations' ids
        slug = f"{slug}-room"
    return name, slug


def _entry(name: str, slug: str) -> str:
    return f"{name.casefold()}{SEP}{slug}"


# KEYS: rooms, by-name, skeletons. ARGV: slug, name, skeleton, entry, max rooms.
# Returns 'new', 'exists', 'confusable:<slug>' or 'full'.
_CREATE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 'exists' end
local twin = redis.call('HGET', KEYS[3], ARGV[3])
if twin and twin ~= ARGV[1] then return 'confusable:' .. twin end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then return 'full' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[4])
return 'new'
"""


async def create(
    redis: Redis, name: str, slug: str, inbox: str, per_hour: int, max_rooms: int
) -> Creation:
    """Make the room, or open the one with that slug; refuse look-alikes and floods.

    The hourly cap counts per inbox (chat/clients.py), so plus-addresses share it, and only
    rooms actually made count.
    """
    if await redis.hexists(_KEY, slug) or slug == DEFAULT_ROOM:
        return Creation(slug)
    skeleton = await asyncio.to_thread(confusables.skeleton, name)  # first use loads the data
    twin = await redis.hget(_SKELETONS, skeleton)
    if twin and twin != slug:
        return _confusable(await name_of(redis, twin) or twin)
    made = made_key(inbox)
    wait = await ratelimit.peek(redis, made, per_hour, 3600)
    if wait:
        return Creation(
            problem=problem("too_many_rooms_made", per_hour=per_hour, seconds=wait), status=429
        )
    result = str(
        await redis.eval(
            _CREATE,
            3,
            _KEY,
            _BY_NAME,
            _SKELETONS,
            slug,
            name,
            skeleton,
            _entry(name, slug),
            max_rooms,
        )
    )
    if result == "full":
        return Creation(problem=problem("rooms_full", limit=max_rooms), status=429)
    if result.startswith("confusable:"):
        twin = result.split(":", 1)[1]
        return _confusable(await name_of(redis, twin) or twin)
    if result == "new":
        await ratelimit.count(redis, made, 3600)
    return Creation(slug)


def made_key(inbox: str) -> str:
    """Rooms (open or private) and conversations one inbox made this hour: one cap for all."""
    return f"{{a:{inbox}}}:rooms-made"


def _confusable(existing: str) -> Creation:
    return Creation(problem=problem("room_name_confusable", existing=existing), status=400)


async def ensure_default(redis: Redis) -> None:
    if await redis.hsetnx(_KEY, DEFAULT_ROOM, DEFAULT_ROOM):
        skeleton = await asyncio.to_thread(confusables.skeleton, DEFAULT_ROOM)
        await redis.zadd(_BY_NAME, {_entry(DEFAULT_ROOM, DEFAULT_ROOM): 0})
        await redis.hset(_SKELETONS, skeleton, DEFAULT_ROOM)


async def name_of(redis: Redis, slug: str) -> str | None:
    if not is_slug(slug):
        return None  # not a slug we could have made: no need to ask Redis
    name: str | None = await redis.hget(_KEY, slug)
    if name is None and slug == DEFAULT_ROOM:  # first use, or Redis came back empty
        await ensure_default(redis)
        return DEFAULT_ROOM
    return name


async def page(redis: Redis, after: str | None) -> tuple[list[tuple[str, str]], str | None]:
    """One page of every room by name, from after the room `after`; and the next cursor."""
    start = "-"
    if after is not None:
        name = await name_of(redis, after)
        if name is None:
            return [], None
        start = "(" + _entry(name, after)
    entries: list[str] = await redis.zrangebylex(_BY_NAME, start, "+", 0, PAGE + 1)
    slugs = [entry.rpartition(SEP)[2] for entry in entries[:PAGE]]
    names = await redis.hmget(_KEY, slugs) if slugs else []
    rooms = [(slug, name) for slug, name in zip(slugs, names, strict=True) if name]
    return rooms, (slugs[-1] if len(entries) > PAGE else None)


async def every_open(redis: Redis) -> dict[str, str]:
    """Every open room: slug -> name."""
    found: dict[str, str] = await redis.hgetall(_KEY)
    found.setdefault(DEFAULT_ROOM, DEFAULT_ROOM)
    return found


async def remember(redis: Redis, person: str, slug: str) -> bool:
    """Put the room in the person's own list (the sidebar); True if it was not there."""
    key = person_key(person, "rooms")
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zadd(key, {slug: time.time()})
        pipe.zremrangebyrank(key, 0, -(SIDEBAR_ROOMS + 1))  # only the latest are shown
        added, _ = await pipe.execute()
    return bool(added)


async def of_person(redis: Redis, person: str) -> list[tuple[str, str]]:
    """(slug, name) of the rooms the person opened lately, "general" first, then by name."""
    slugs: list[str] = await redis.zrevrange(person_key(person, "rooms"), 0, SIDEBAR_ROOMS - 1)
    slugs = [DEFAULT_ROOM, *(slug for slug in slugs if slug != DEFAULT_ROOM)]
    names = await redis.hmget(_KEY, slugs)
    rooms = {slug: name for slug, name in zip(slugs, names, strict=True) if name}
    rooms.setdefault(DEFAULT_ROOM, DEFAULT_ROOM)
    return sorted(rooms.items(), key=lambda item: (item[0] != DEFAULT_ROOM, item[1].casefold()))


async def reindex(redis: Redis) -> None:
    """Rooms made before the name index and skeletons existed get both (once, at start)."""
    await ensure_default(redis)
    rooms: dict[str, str] = await redis.hgetall(_KEY)
    if await redis.zcard(_BY_NAME) == len(rooms) and await redis.hlen(_SKELETONS) >= len(rooms):
        return
    skeletons = await asyncio.to_thread(
        lambda: {confusables.skeleton(name): slug for slug, name in rooms.items()}
    )
    async with redis.pipeline(transaction=False) as pipe:
        if rooms:
            pipe.zadd(_BY_NAME, {_entry(name, slug): 0 for slug, name in rooms.items()})
        for skeleton, slug in skeletons.items():
            pipe.hsetnx(_SKELETONS, skeleton, slug)
        await pipe.execute()


def init_app(app: Quart) -> None:
    @app.before_serving
    async def index_rooms() -> None:
        # Built once, off the event loop: names and addresses are checked against it.
        await asyncio.to_thread(confusables.prototypes)
        try:
            await reindex(store.redis(app))
            await reindex_directory(store.redis(app))
        except store.REDIS_DOWN as error:  # the app still starts; the next start retries
            log.warning("room index not checked: %s", error)
