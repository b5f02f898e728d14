"""Room history in one Redis Stream per room: append, recent page, older pages, catch-up."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis

PAGE = 50
STREAM_ID = r"^\d{1,20}-\d{1,20}$"


@dataclass(frozen=True)
class Message:
    id: str
    author: str  # email; shown only as its local part
    name: str
    body: str
    sent_at: datetime

    @classmethod
    def from_entry(cls, entry_id: str, fields: dict[str, str]) -> Message:
        return cls(
            id=entry_id,
            author=fields.get("author", ""),
            name=fields.get("name", "?"),
            body=fields.get("body", ""),
            sent_at=datetime.fromtimestamp(int(fields.get("ts", "0")) / 1000, UTC),
        )


def stream_key(slug: str) -> str:
    return f"stream:{slug}"


def id_key(entry_id: str) -> tuple[int, int]:
    """Stream ids sort by (milliseconds, sequence)."""
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)


async def recent(redis: Redis, slug: str, count: int = PAGE) -> list[Message]:
    entries = await redis.xrevrange(stream_key(slug), count=count)
    return [Message.from_entry(i, f) for i, f in reversed(entries)]


async def before(redis: Redis, slug: str, entry_id: str, count: int = PAGE) -> list[Message]:
    entries = await redis.xrevrange(stream_key(slug), max=f"({entry_id}", count=count)
    return [Message.from_entry(i, f) for i, f in reversed(entries)]


async def after(redis: Redis, slug: str, entry_id: str, count: int) -> list[Message]:
    entries = await redis.xrange(stream_key(slug), min=f"({entry_id}", count=count)
    return [Message.from_entry(i, f) for i, f in entries]


async def epoch(redis: Redis, slug: str) -> str:
    """A token that changes when the room's history is lost (Redis came back empty).

    Clients carry the epoch their page was rendered with; a different one means "reload the
    whole list" rather than "append what you missed", so nobody is shown a silent hole.
    """
    fresh = secrets.token_hex(6)
    previous = await redis.set(f"epoch:{slug}", fresh, nx=True, get=True)
    return str(previous or fresh)
