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


def hue(person: str) -> int:
    """One of eight avatar colours, stable per person and the same for every viewer."""
    try:
        return int(person[:2], 16) % 8
    except ValueError:
        return 0


def legacy_tag(email: str) -> str:
    """What stood for the author in messages stored before person ids: a keyed tag of the
    address. Those messages keep it, and the viewer's stylesheet matches both."""
    return _keyed_tag(store.secret(), email)


@functools.lru_cache(maxsize=4096)
def _keyed_tag(secret: bytes, email: str) -> str:
    key = hashlib.sha256(secret).digest()
    return hashlib.blake2b(email.encode(), key=key, digest_size=8).hexdigest()


# Everyone who has signed in, by name, for /people: "folded name\x1fperson id".
_DIRECTORY = "people:directory"
DIRECTORY_PAGE = 50
SEP = "\x1f"


def _directory_entry(email: str, person: str) -> str:
    return f"{email.rpartition('@')[0].casefold()}{SEP}{person}"


async def list_person(redis: Redis, person: str, email: str) -> None:
    await redis.zadd(_DIRECTORY, {_directory_entry(email, person): 0})


async def emails_of(redis: Redis, persons: list[str]) -> dict[str, str]:
    """The address of each of these people (those who have one)."""
    if not persons:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for person in persons:
            pipe.hget(person_key(person, "profile"), "email")
        found = await pipe.execute()
    return {person: email for person, email in zip(persons, found, strict=True) if email}


async def directory(
    redis: Redis, query: str, after: str | None
) -> tuple[list[tuple[str, str]], str | None]:
    """(person, email) of people whose name starts with `query`, a page from after the entry
    `after`; and the cursor of the next page."""
    prefix = query.casefold()
    start = f"({after}" if after else f"[{prefix}"
    # The upper bound is a byte 0xff, above any UTF-8 byte ("\xff" as text would be c3 bf).
    entries: list[str] = await redis.zrangebylex(
        _DIRECTORY, start, b"[" + prefix.encode() + b"\xff", 0, DIRECTORY_PAGE + 1
    )
    persons = [entry.rpartition(SEP)[2] for entry in entries[:DIRECTORY_PAGE]]
    emails = await emails_of(redis, persons)
    rows = [(person, emails[person]) for person in persons if person in emails]
    return rows, (entries[DIRECTORY_PAGE - 1] if len(entries) > DIRECTORY_PAGE else None)


async def reindex_directory(redis: Redis) -> None:
    """People who signed in before the directory existed are listed (once, at start)."""
    if await redis.exists(_DIRECTORY):
        return
    persons = list(set(await redis.hvals(_BY_EMAIL)))
    emails = await emails_of(redis, persons)
    if emails:
        await redis.zadd(
            _DIRECTORY, {_directory_entry(email, person): 0 for person, email in emails.items()}
        )
