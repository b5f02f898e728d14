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
