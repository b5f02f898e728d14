"""Room history in one Redis Stream per room: its entries as messages, ids, the epoch.

Pages and catch-up merge in changed messages: chat/timeline.py."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis

from chat import keys
from chat.people import legacy_tag

PAGE = 50
# Both halves of a stream id are unsigned 64-bit integers, written in ASCII digits.
_STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
U64_MAX = 2**64 - 1


# The reactions every message offers, in their order under it.
REACTIONS = ("👍", "❤️", "😂", "🎉", "😮", "🙏")

Reactors = tuple[tuple[str, str], ...]  # (person id, name), in the order they reacted


@dataclass(frozen=True)
class Message:
    id: str
    author: str  # email ("" for a bot); never shown to other people
    person: str  # the author's person id (data-author, avatar colour)
    name: str
    body: str
    sent_at: datetime
    seq: int = 0  # the room's message number (chat/unread.py); 0 for messages from before
    mentions: tuple[tuple[str, str], ...] = ()  # (folded name, person id) it @mentions
    bot: bool = False
    edited_at: datetime | None = None
    deleted: bool = False
    reactions: tuple[tuple[str, Reactors], ...] = ()  # (emoji, who), emoji in REACTIONS order
    version: int = 0  # how many changes it has had (chat/versions.py)

    def reactors(self, emoji: str) -> Reactors:
        return dict(self.reactions).get(emoji, ())

    @property
    def mentioned(self) -> str:
        """The mentioned people, space-separated (the data attribute each viewer's CSS reads)."""
        return " ".join(dict.fromkeys(person for _, person in self.mentions))

    @classmethod
    def from_entry(cls, entry_id: str, fields: dict[str, str]) -> Message:
        author = fields.get("author", "")
        return cls(
            id=entry_id,
            author=author,
            # Messages from before person ids carry none: a keyed tag of the address stands in.
            person=fields.get("pid") or legacy_tag(author),
            name=fields.get("name", "?"),
            body=fields.get("body", ""),
            sent_at=datetime.fromtimestamp(int(fields.get("ts", "0")) / 1000, UTC),
            seq=int(fields.get("n") or 0),
            mentions=_mentions(fields.get("men")),
            bot=fields.get("bot") == "1",
        )


def is_message(fields: dict[str, str]) -> bool:
    """A message, not a change event (chat/versions.py), among a stream's entries."""
    return "k" not in fields


def _mentions(raw: str | None) -> tuple[tuple[str, str], ...]:
    if not raw:
        return ()
    try:
        pairs = json.loads(raw)
        return tuple((str(name), str(person)) for name, person in pairs)
    except (ValueError, TypeError):
        return ()


def stream_key(slug: str) -> str:
    return keys.room(slug, "stream")


def epoch_key(slug: str) -> str:
    return keys.room(slug, "epoch")


def parse_id(text: str | None) -> tuple[int, int] | None:
    """(milliseconds, sequence) of a well-formed stream id, or None (not one, or past 64 bits)."""
    if text is None or not _STREAM_ID.fullmatch(text):
        return None
    millis, _, seq = text.partition("-")
    if int(millis) > U64_MAX or int(seq) > U64_MAX:
        return None
    return int(millis), int(seq)


def id_key(entry_id: str) -> tuple[int, int]:
    """Stream ids sort by (milliseconds, sequence)."""
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)


def previous(entry_id: tuple[int, int]) -> str | None:
    """The largest id below this one (an inclusive bound: Redis refuses "(0-0")."""
    millis, seq = entry_id
    if seq > 0:
        return f"{millis}-{seq - 1}"
    return f"{millis - 1}-{U64_MAX}" if millis > 0 else None


def following(entry_id: tuple[int, int]) -> str | None:
    """The smallest id above this one (Redis refuses an exclusive bound past the largest)."""
    millis, seq = entry_id
    if seq < U64_MAX:
        return f"{millis}-{seq + 1}"
    return f"{millis + 1}-0" if millis < U64_MAX else None


async def epoch(redis: Redis, slug: str) -> str:
    """A token that changes when the room's history is lost (Redis came back empty).

    Clients carry the epoch their page was rendered with; a different one means "reload the
    whole list" rather than "append what you missed", so nobody is shown a silent hole.
    """
    fresh = secrets.token_hex(6)
    previous = await redis.set(epoch_key(slug), fresh, nx=True, get=True)
    return str(previous or fresh)
