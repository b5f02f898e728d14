"""People: a random, stable id per email address, made at its first sign-in.

The id, not the address, is what pages and fragments carry (data-author, avatar colour), so
two people whose addresses share a local part never look alike, and nothing in a page spells
out an address. Keys of one person share the hash tag `{p:<id>}`.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import time
import unicodedata
from dataclasses import dataclass

from redis.asyncio import Redis

from chat import codes, store

_BY_EMAIL = "people:by-email"


def person_key(person: str, name: str) -> str:
    return f"{{p:{person}}}:{name}"


async def person_for(redis: Redis, email: str) -> str:
    """The person id of this exact address, made on first use (two racing sign-ins agree)."""
    digest = codes.email_key(store.secret(), email)
    fresh = secrets.token_hex(8)
    if await redis.hsetnx(_BY_EMAIL, digest, fresh):
        await redis.hset(
            person_key(fresh, "profile"), mapping={"email": email, "since": int(time.time())}
        )
        return fresh
    return str(await redis.hget(_BY_EMAIL, digest))


async def exists(redis: Redis, email: str) -> bool:
    """Has this exact address ever signed in?"""
    return bool(await redis.hexists(_BY_EMAIL, codes.email_key(store.secret(), email)))


async def find(redis: Redis, email: str) -> str | None:
    """The person id of this exact address, or None if it never signed in (nothing made)."""
    found = await redis.hget(_BY_EMAIL, codes.email_key(store.secret(), email))
    return str(found) if found else None


def hue(person: str) -> int:
    """One of eight avatar colours, stable per person and the same for every viewer."""
    try:
        return int(person[:2], 16) % 8
    except ValueError:
        return 0


def legacy_tag(email: str, secret: bytes | None = None) -> str:
    """What stood for the author in messages stored before person ids: a keyed tag of the
    address. Those messages keep it, and the viewer's stylesheet matches both. (`secret` for
    a caller outside the app's context, such as the archive's writer thread.)"""
    return _keyed_tag(secret if secret is not None else store.secret(), email)


@functools.lru_cache(maxsize=4096)
def _keyed_tag(secret: bytes, email: str) -> str:
    key = hashlib.sha256(secret).digest()
    return hashlib.blake2b(email.encode(), key=key, digest_size=8).hexdigest()


@dataclass(frozen=True)
class Profile:
    person: str
    name: str  # the display name: chosen in /settings, else the address's local part
    email: str  # shown to admins only


def default_name(email: str) -> str:
    """The name of someone who never chose one: their address's local part."""
    return email.rpartition("@")[0] or email


async def profiles_of(redis: Redis, persons: list[str]) -> dict[str, Profile]:
    """The profile of each of these people (those who have one), in one round trip."""
    if not persons:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for person in persons:
            pipe.hmget(person_key(person, "profile"), ["email", "name"])
        found = await pipe.execute()
    return {
        person: Profile(person, name or default_name(email), email)
        for person, (email, name) in zip(persons, found, strict=True)
        if email
    }


async def profile(redis: Redis, person: str) -> Profile | None:
    return (await profiles_of(redis, [person])).get(person)


# Everyone who has signed in, by display name, for /people: "folded name\x1fperson id".
_DIRECTORY = "people:directory"
DIRECTORY_PAGE = 50
SEP = "\x1f"


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def _directory_entry(name: str, person: str) -> str:
    return f"{_fold(name)}{SEP}{person}"


async def list_person(redis: Redis, person: str) -> None:
    """List the person under their current name (at each sign-in)."""
    found = await profile(redis, person)
    if found is not None:
        await redis.zadd(_DIRECTORY, {_directory_entry(found.name, person): 0})


async def relist_person(redis: Redis, person: str, old_name: str, new_name: str) -> None:
    """The person, renamed, is found by the new name only."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrem(_DIRECTORY, _directory_entry(old_name, person))
        pipe.zadd(_DIRECTORY, {_directory_entry(new_name, person): 0})
        await pipe.execute()


async def directory(
    redis: Redis, query: str, after: str | None
) -> tuple[list[Profile], str | None]:
    """People whose name starts with `query`, a page from after the entry `after`; and the
    cursor of the next page."""
    prefix = _fold(query)
    start = f"({after}" if after else f"[{prefix}"
    # The upper bound is a byte 0xff, above any UTF-8 byte ("\xff" as text would be c3 bf).
    entries: list[str] = await redis.zrangebylex(
        _DIRECTORY, start, b"[" + prefix.encode() + b"\xff", 0, DIRECTORY_PAGE + 1
    )
    listed = [entry.rpartition(SEP) for entry in entries[:DIRECTORY_PAGE]]
    found = await profiles_of(redis, [person for _, _, person in listed])
    # An entry of a name the person no longer has (two renames raced) is not shown.
    rows = [
        found[person]
        for name, _, person in listed
        if person in found and _fold(found[person].name) == name
    ]
    return rows, (entries[DIRECTORY_PAGE - 1] if len(entries) > DIRECTORY_PAGE else None)


async def forget(redis: Redis, person: str, email: str) -> None:
    """A deleted account: its address no longer leads to the person (signing in with it makes
    someone new), and nobody finds them in the directory."""
    digest = codes.email_key(store.secret(), email)
    if await redis.hget(_BY_EMAIL, digest) == person:
        await redis.hdel(_BY_EMAIL, digest)
    listed = [entry async for entry, _ in redis.zscan_iter(_DIRECTORY, match=f"*{SEP}{person}")]
    if listed:
        await redis.zrem(_DIRECTORY, *listed)


async def reindex_directory(redis: Redis) -> None:
    """People who signed in before the directory existed are listed (once, at start)."""
    if await redis.exists(_DIRECTORY):
        return
    persons = list(set(await redis.hvals(_BY_EMAIL)))
    found = await profiles_of(redis, persons)
    if found:
        await redis.zadd(
            _DIRECTORY, {_directory_entry(p.name, person): 0 for person, p in found.items()}
        )
