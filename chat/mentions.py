"""@mentions: which people of the room a message names, found once when it is posted.

A name matches a person of the room by display name (chat/profiles.py; the address's local
part for people who never chose one), case-insensitively. Names may have spaces, and Chinese
needs no space after a name ("@张伟你好"), so the longest start of the words after "@" that
names someone is the mention. The message keeps what it matched (folded name, person)
pairs, so every later render links the same people.
"""

from __future__ import annotations

from redis.asyncio import Redis

from chat import membership
from chat.text import AT_WORD

MAX_MENTIONS = 20  # people notified by one message; the rest stay plain text
MAX_NAME_CHARS = 64  # a display name has at most 40; an address's local part, 64

Mentions = tuple[tuple[str, str], ...]  # (folded name, person id)


def _prefixes(word: str) -> list[str]:
    word = word[:MAX_NAME_CHARS]
    return [word[:end].casefold() for end in range(len(word), 0, -1)]


async def resolve(redis: Redis, slug: str, body: str) -> Mentions:
    """Everyone the body @mentions among the room's people (one Redis round trip)."""
    if "@" not in body:
        return ()
    words = [match.group(1) for match in AT_WORD.finditer(body)][:MAX_MENTIONS]
    candidates = sorted({prefix for word in words for prefix in _prefixes(word)})
    known = await membership.named(redis, slug, candidates)
    found: dict[tuple[str, str], None] = {}
    for word in words:
        for prefix in _prefixes(word):
            if prefix in known:
                # Two people of the room with one name are both named, so both are mentioned.
                found.update(dict.fromkeys((prefix, person) for person in sorted(known[prefix])))
                break
    return tuple(found)[:MAX_MENTIONS]
