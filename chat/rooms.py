"""The room registry: slug -> display name, kept in one Redis hash."""

from __future__ import annotations

import re
import unicodedata

from redis.asyncio import Redis

DEFAULT_ROOM = "general"
MAX_NAME_CHARS = 60
MAX_SLUG_CHARS = 40
_KEY = "rooms"


class RoomNameError(ValueError):
    pass


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:MAX_SLUG_CHARS].strip("-")


def clean_name(raw: str) -> tuple[str, str]:
    """(display name, slug) for a requested room name, or RoomNameError saying why not."""
    name = " ".join(raw.split())
    if not name:
        raise RoomNameError("Give the room a name.")
    if len(name) > MAX_NAME_CHARS:
        raise RoomNameError(f"Room names are at most {MAX_NAME_CHARS} characters.")
    slug = slugify(name)
    if not slug:
        raise RoomNameError("Use at least one letter or digit in the room name.")
    return name, slug


async def ensure_default(redis: Redis) -> None:
    await redis.hsetnx(_KEY, DEFAULT_ROOM, DEFAULT_ROOM)


async def create(redis: Redis, name: str, slug: str) -> bool:
    """True if a new room was made; False if the slug was taken (the caller opens that one)."""
    return bool(await redis.hsetnx(_KEY, slug, name))


async def name_of(redis: Redis, slug: str) -> str | None:
    name: str | None = await redis.hget(_KEY, slug)
    if name is None and slug == DEFAULT_ROOM:  # first use, or Redis came back empty
        await ensure_default(redis)
        return DEFAULT_ROOM
    return name


async def all_rooms(redis: Redis) -> list[tuple[str, str]]:
    """(slug, name) pairs, "general" first, then by name."""
    rooms: dict[str, str] = await redis.hgetall(_KEY)
    if DEFAULT_ROOM not in rooms:  # first use, or Redis came back empty
        await ensure_default(redis)
        rooms[DEFAULT_ROOM] = DEFAULT_ROOM
    return sorted(rooms.items(), key=lambda item: (item[0] != DEFAULT_ROOM, item[1].lower()))
