"""Display names: what people are called on messages, the Online list, mentions and /people.

A person's name lives in their profile (`{p:<id>}:profile`, field `name`; none means the
address's local part) and is copied into each of their sessions, so a request still reads one
record and a rename shows on their next message in every tab. Old messages keep the name they
were sent under.
"""

from __future__ import annotations

import re
import unicodedata

from redis.asyncio import Redis

from chat import live_room, membership, people, presence, sessions
from chat.problems import problem
from chat.text import clean_line, has_hidden

MAX_NAME_CHARS = 40
# Format characters that writing needs: the joiners (emoji sequences, Indic and Arabic
# scripts) and the tags of subdivision flags. Every other control or format character is
# refused: with them a name can hide, reorder or fake its text.
_NEEDED_FORMAT = frozenset("\u200c\u200d") | {chr(c) for c in range(0xE0020, 0xE0080)}


class NameRefused(ValueError):
    def __init__(self, kind: str, **args: object) -> None:
        super().__init__(kind)
        self.problem = problem(kind, **args)


# Tag characters only inside a subdivision flag (🏴 + tags + cancel tag), never loose.
_FLAG = re.compile("\U0001f3f4[\U000e0020-\U000e007e]{1,30}\U000e007f")


def _loose_tags(name: str) -> bool:
    return any(0xE0020 <= ord(char) <= 0xE007F for char in _FLAG.sub("", name))


def _hidden(char: str) -> bool:
    category = unicodedata.category(char)
    return category == "Cc" or (category == "Cf" and char not in _NEEDED_FORMAT)


def clean_display_name(raw: str) -> str:
    """The name as it will be shown (NFC, trimmed, inner whitespace one space), or
    NameRefused saying why not."""
    name = unicodedata.normalize("NFC", raw).strip()
    if has_hidden(name) or any(_hidden(char) for char in name) or _loose_tags(name):
        raise NameRefused("display_name_hidden_characters")
    name = clean_line(name)
    if not name:
        raise NameRefused("display_name_empty")
    if len(name) > MAX_NAME_CHARS:
        raise NameRefused("display_name_too_long", limit=MAX_NAME_CHARS)
    return name


async def rename(redis: Redis, person: str, name: str) -> None:
    """Call the person `name` (already cleaned) from now on, wherever they are named."""
    found = await people.profile(redis, person)
    if found is None or found.name == name:
        return
    # The indexes first, the name last: should Redis fail in between, the profile still has
    # the old name, and the person's next try does every step again (each can be repeated).
    await people.relist_person(redis, person, found.name, name)
    slugs = await membership.rename(redis, person, found.name, name)
    await sessions.save_name(redis, person, name)
    # The rooms that list them as online show the new name at once.
    user = presence.user_of(person, found.email)
    for slug in await presence.rooms_with(redis, user, slugs):
        await live_room.refresh_online(slug)
