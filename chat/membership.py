"""Who may read a room: the one access rule every path asks, `readable(redis, slug, person)`.

Open rooms (chat/rooms.py's registry) are everyone's. Private rooms (`p-<16 hex>`, random)
and direct conversations (`d-<16 hex>`, a keyed hash of the set of people, so starting one
again opens the same) have members. Keys of one room share the hash tag `{r:<room>}`:
`meta` (kind, name, creator; a direct conversation's people and their names), `members` (set
of person ids) and `names` (sorted set "folded name\\x1fperson", for @mentions; open rooms
keep one too, of the people who opened them). Per person, `{p:<id>}:joined` (room -> when)
lists their private rooms and conversations.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from redis.asyncio import Redis

from chat import codes, people, rooms, unread
from chat.people import person_key

OPEN, PRIVATE, DIRECT = "open", "private", "direct"
MAX_DIRECT = 8  # people in one direct conversation, the starter included
MAX_MEMBERS = 1000  # people in one private room
PENDING_SECONDS = 90 * 86400  # how long an invitation waits for its first sign-in
SEP = "\x1f"
MEMBER_ROOM = rooms.MEMBER_ROOM


@dataclass(frozen=True)
class Room:
    slug: str
    kind: str
    name: str  # a direct conversation has none: each viewer sees the others' names
    people: dict[str, str] = field(default_factory=dict)  # direct: person id -> name

    def title_for(self, person: str) -> str:
        if self.kind != DIRECT:
            return self.name
        others = sorted(name for pid, name in self.people.items() if pid != person)
        return ", ".join(others) or self.people.get(person, "")

    @property
    def has_members(self) -> bool:
        return self.kind != OPEN


def meta_key(slug: str) -> str:
    return f"{{r:{slug}}}:meta"


def members_key(slug: str) -> str:
    return f"{{r:{slug}}}:members"


def names_key(slug: str) -> str:
    return f"{{r:{slug}}}:names"


def joined_key(person: str) -> str:
    return person_key(person, "joined")


def _name_entry(name: str, person: str) -> str:
    return f"{name.casefold()}{SEP}{person}"


async def readable(redis: Redis, slug: str, person: str) -> Room | None:
    """The room if `person` may see, read and post in it; None otherwise (or no such room).

    Callers answer None with 404, never 403: a private room's existence is not revealed.
    """
    if not rooms.is_slug(slug):
        return None
    if not MEMBER_ROOM.match(slug):
        name = await rooms.name_of(redis, slug)
        return Room(slug, OPEN, name) if name is not None else None
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(meta_key(slug))
        pipe.sismember(members_key(slug), person)
        meta, member = await pipe.execute()
    if not meta or not member:
        return None
    return _room(slug, meta)


def _room(slug: str, meta: dict[str, str]) -> Room:
    people = json.loads(meta.get("people") or "{}") if meta.get("kind") == DIRECT else {}
    return Room(slug, meta.get("kind", PRIVATE), meta.get("name", ""), people)


async def joined(redis: Redis, person: str) -> list[Room]:
    """The person's private rooms and direct conversations, newest first."""
    slugs: list[str] = await redis.zrevrange(joined_key(person), 0, 499)
    if not slugs:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for slug in slugs:
            pipe.hgetall(meta_key(slug))
        metas = await pipe.execute()
    return [_room(slug, meta) for slug, meta in zip(slugs, metas, strict=True) if meta]


async def readable_rooms(redis: Redis, person: str) -> dict[str, Room]:
    """Every room `person` may read now (search, export): each open room, and their private
    rooms and direct conversations."""
    found = {slug: Room(slug, OPEN, name) for slug, name in (await rooms.every_open(redis)).items()}
    found.update({room.slug: room for room in await joined(redis, person)})
    return found


async def any_room(redis: Redis, slug: str) -> Room | None:
    """The room whoever asks (an admin's export), or None if there is no such room."""
    if not rooms.is_slug(slug):
        return None
    if not MEMBER_ROOM.match(slug):
        name = await rooms.name_of(redis, slug)
        return Room(slug, OPEN, name) if name is not None else None
    meta = await redis.hgetall(meta_key(slug))
    return _room(slug, meta) if meta else None


async def _add(redis: Redis, slug: str, people: dict[str, str], seq: int | None = None) -> None:
    """Make these people members (marks at `seq`, so what came before is not "unread")."""
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.sadd(members_key(slug), *people)
        pipe.zadd(names_key(slug), {_name_entry(name, pid): 0 for pid, name in people.items()})
        for pid in people:
            pipe.zadd(joined_key(pid), {slug: now})
            if seq:
                pipe.hset(unread.marks_key(pid), slug, seq)
        await pipe.execute()


async def create_private(redis: Redis, name: str, creator: str, creator_name: str) -> str:
    slug = "p-" + secrets.token_hex(8)
    await redis.hset(
        meta_key(slug),
        mapping={"kind": PRIVATE, "name": name, "creator": creator, "created": int(time.time())},
    )
    await _add(redis, slug, {creator: creator_name})
    return slug


def direct_slug(secret: bytes, people: Iterable[str]) -> str:
    digest = hmac.new(secret, ",".join(sorted(set(people))).encode(), hashlib.sha256)
    return "d-" + digest.hexdigest()[:16]


async def direct_is_whole(redis: Redis, slug: str) -> bool:
    """Made, with every step done (a making cut short is done again by the next try)."""
    return bool(await redis.hexists(meta_key(slug), "people"))


async def open_direct(
    redis: Redis, secret: bytes, people: dict[str, str], starter: str
) -> tuple[str, bool]:
    """The direct conversation of exactly these people (2 to MAX_DIRECT); (slug, made now).

    A starter who had left it is back in; the others who left stay out until they start it.
    """
    slug = direct_slug(secret, people)
    made = bool(await redis.hsetnx(meta_key(slug), "kind", DIRECT))
    if made or not await direct_is_whole(redis, slug):
        # Made now, or its making was cut short (Redis failed): every step again, and
        # `people` last, as the mark that the conversation is whole.
        await redis.hset(meta_key(slug), "created", int(time.time()))
        await _add(redis, slug, people)
        await redis.hset(meta_key(slug), "people", json.dumps(people, ensure_ascii=False))
        return slug, True
    if not await redis.sismember(members_key(slug), starter):
        current = int(await redis.get(unread.seq_key(slug)) or 0)
        await _add(redis, slug, {starter: people[starter]}, current)
    return slug, False


async def invite(redis: Redis, slug: str, person: str, name: str) -> bool:
    """Make `person` a member of the private room; False if the room is full."""
    if await redis.sismember(members_key(slug), person):
        return True
    if await redis.scard(members_key(slug)) >= MAX_MEMBERS:
        return False
    current = int(await redis.get(unread.seq_key(slug)) or 0)
    await _add(redis, slug, {person: name}, current)
    return True


async def leave(redis: Redis, slug: str, person: str) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.srem(members_key(slug), person)
        pipe.zrem(joined_key(person), slug)
        pipe.zrem(person_key(person, "rooms"), slug)
        await pipe.execute()
    stale = [e for e in await redis.zrange(names_key(slug), 0, -1) if e.endswith(SEP + person)]
    if stale:
        await redis.zrem(names_key(slug), *stale)
    await unread.forget_room(redis, person, slug)


async def forget_person(redis: Redis, slug: str, person: str) -> None:
    """A deleted account: out of the room, and out of its record (a private room's creator,
    a direct conversation's people: the others see only each other's names there)."""
    await leave(redis, slug, person)
    meta = await redis.hgetall(meta_key(slug))
    if meta.get("creator") == person:
        await redis.hdel(meta_key(slug), "creator")
    if meta.get("kind") == DIRECT:
        people = json.loads(meta.get("people") or "{}")
        if people.pop(person, None) is not None:
            await redis.hset(meta_key(slug), "people", json.dumps(people, ensure_ascii=False))


async def note_visit(redis: Redis, slug: str, person: str, name: str) -> None:
    """Someone opened an open room: they can be @mentioned in it from now on."""
    await redis.zadd(names_key(slug), {_name_entry(name, person): 0})


# A renamed person's name among a direct conversation's people (the others' titles).
# KEYS: meta. ARGV: person, name.
_RENAME_IN_DIRECT = """
local people = redis.call('HGET', KEYS[1], 'people')
if not people then return 0 end
local names = cjson.decode(people)
if names[ARGV[1]] == nil then return 0 end
names[ARGV[1]] = ARGV[2]
redis.call('HSET', KEYS[1], 'people', cjson.encode(names))
return 1
"""


async def rename(redis: Redis, person: str, old: str, new: str) -> list[str]:
    """@mentions find the person by the new name, not the old one, in the rooms they are in
    or opened lately (returned); their direct conversations are titled with it. (An open
    room opened long ago learns the new name at the next visit.)"""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrange(joined_key(person), 0, -1)
        pipe.zrange(person_key(person, "rooms"), 0, -1)
        joined, opened = await pipe.execute()
    slugs = sorted({*joined, *opened})
    async with redis.pipeline(transaction=False) as pipe:
        for slug in slugs:
            pipe.zrem(names_key(slug), _name_entry(old, person))
            pipe.zadd(names_key(slug), {_name_entry(new, person): 0})
            if slug.startswith("d-"):
                pipe.eval(_RENAME_IN_DIRECT, 1, meta_key(slug), person, new)
        await pipe.execute()
    return slugs


async def named(redis: Redis, slug: str, candidates: list[str]) -> dict[str, list[str]]:
    """For each candidate name (already case-folded), the people of the room called that."""
    if not candidates:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for name in candidates:
            pipe.zrangebylex(names_key(slug), f"[{name}{SEP}", f"[{name}{SEP}".encode() + b"\xff")
        found = await pipe.execute()
    return {
        name: [entry.rpartition(SEP)[2] for entry in entries]
        for name, entries in zip(candidates, found, strict=True)
        if entries
    }


def _pending_key(secret: bytes, email: str) -> str:
    return "invited:" + codes.email_key(secret, email)


async def invite_address(redis: Redis, secret: bytes, slug: str, email: str) -> str | None:
    """Let the owner of `email` into the private room, now or at their first sign-in.

    An address nobody signed in with yet is not made a person (that would count it as known
    to the sign-in limits); it waits under a keyed digest until its first sign-in. Returns the
    person id when there is one (to tell their open tabs), else None.
    """
    if not await people.exists(redis, email):
        key = _pending_key(secret, email)
        await redis.sadd(key, slug)
        await redis.expire(key, PENDING_SECONDS)
        return None
    person = await people.person_for(redis, email)
    return person if await invite(redis, slug, person, await _name_of(redis, person)) else None


async def accept_invites(redis: Redis, secret: bytes, person: str, email: str) -> None:
    """At sign-in: the private rooms this address was invited into before it had an account."""
    key = _pending_key(secret, email)
    for slug in await redis.smembers(key):
        if MEMBER_ROOM.match(slug) and await redis.hget(meta_key(slug), "kind") == PRIVATE:
            await invite(redis, slug, person, await _name_of(redis, person))
    await redis.delete(key)


async def _name_of(redis: Redis, person: str) -> str:
    found = await people.profile(redis, person)
    return found.name if found is not None else ""
