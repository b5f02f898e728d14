"""Searching what a person may read: the query's words and filters, the archive's answer.

A query is words (or "quoted phrases"), all of which a message must hold, plus `in:<room>`
and `from:<name>` (or from:"two words"). Case and diacritics are ignored (chat/folding.py).
Terms of three characters or more are found anywhere in the text, in any script (trigrams);
shorter ones are whole words, and in Chinese, Japanese and Korean each character counts as a
word, so "你好" finds "你好吗". Only the rooms the person may read now are searched: a room
they may not read is treated like one with no results, never as an error that reveals it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from redis.asyncio import Redis

from chat import archiver, folding, membership, ratelimit, versions
from chat.history import Message
from chat.people import person_key
from chat.problems import ShownError
from chat.text import clean_line

MAX_QUERY_CHARS = 200
MAX_TERMS = 8
PER_PAGE = 20
_TOKEN = re.compile(r'(?:(in|from):)?(?:"([^"]*)"?|(\S+))', re.IGNORECASE)
# A row cursor: ASCII digits of a signed 64-bit integer.
_ROW = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True)
class Query:
    text: str
    long_terms: tuple[str, ...]  # folded, three characters or more: the trigram index
    short_terms: tuple[str, ...]  # folded and spaced, one or two characters: the word index
    room: str | None
    author: str | None  # folded

    @property
    def marks(self) -> list[str]:
        """What to mark in a snippet: every term, folded."""
        return [*self.long_terms, *(t.replace(" ", "") for t in self.short_terms)]

    @property
    def empty(self) -> bool:
        return not (self.long_terms or self.short_terms)


def parse(raw: str) -> Query:
    """The query's terms and filters; a query too long is refused (400), never cut silently."""
    text = clean_line(raw)  # no controls (FTS5 strings end at NUL), no hidden characters
    if len(text) > MAX_QUERY_CHARS:
        raise ShownError(400, "search_too_long", limit=MAX_QUERY_CHARS)
    long_terms: list[str] = []
    short_terms: list[str] = []
    room = author = None
    for match in _TOKEN.finditer(text):
        key, quoted, bare = match.group(1), match.group(2), match.group(3)
        value = quoted if quoted is not None else bare or ""
        if key and key.lower() == "in":
            room = value.strip().lstrip("#").lower()
        elif key:
            author = folding.fold(" ".join(value.split())).lstrip("@")
        else:
            _add_term(value, long_terms, short_terms)
    if short_terms and all(folding.only_cjk(term) for term in long_terms):
        # Chinese words are exact phrases in the word index too: one index answers the whole
        # query (joining the two costs 50-180 ms on a million messages; this, about 1 ms).
        short_terms += [" ".join(folding.spaced_folded(term).split()) for term in long_terms]
        long_terms = []
    return Query(
        text,
        tuple(dict.fromkeys(long_terms))[:MAX_TERMS],
        tuple(dict.fromkeys(short_terms))[:MAX_TERMS],
        room or None,
        author or None,
    )


def _add_term(value: str, long_terms: list[str], short_terms: list[str]) -> None:
    folded = folding.fold(" ".join(value.split()))
    if len(folded) >= 3:
        long_terms.append(folded)
    elif any(c.isalnum() for c in folded):  # the word index has no punctuation to find
        short_terms.append(" ".join(folding.spaced_folded(folded).split()))


def parse_cursor(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not _ROW.fullmatch(raw) or int(raw) > 2**63 - 1:
        raise ShownError(400, "not_a_search_page")
    return int(raw)


@dataclass(frozen=True)
class Result:
    slug: str
    room: membership.Room
    message: Message
    snippet: list[tuple[str, bool]]


@dataclass(frozen=True)
class Results:
    found: list[Result]
    more: int | None  # the cursor of "More results"
    stopped_early: bool = False  # the page's time ran out before it was full


async def search(
    redis: Redis, person: str, query: Query, before: int | None, per_minute: int
) -> Results:
    """The newest PER_PAGE messages matching `query` in rooms `person` may read."""
    if query.empty:
        return Results([], None)
    key = person_key(person, "searches")
    wait = await ratelimit.fixed_window(redis, key, per_minute, 60)
    if wait:
        raise ShownError(429, "searching_too_fast", seconds=wait)
    rooms = await membership.readable_rooms(redis, person)
    wanted = [query.room] if query.room else list(rooms)
    slugs = [slug for slug in wanted if slug in rooms]
    found = await archiver.read_or_refuse(
        "search",
        slugs,
        list(query.long_terms),
        list(query.short_terms),
        query.author,
        before,
        PER_PAGE + 1,
    )
    results = []
    for hit in found.hits[:PER_PAGE]:
        message = versions.applied(
            Message.from_entry(hit.entry.id, hit.entry.fields), hit.entry.state
        )
        snippet = folding.marked(message.body, query.marks)
        results.append(Result(hit.entry.room, rooms[hit.entry.room], message, snippet))
    if len(found.hits) > PER_PAGE:
        return Results(results, found.hits[PER_PAGE - 1].row)
    if found.stopped_at is not None:
        return Results(results, found.stopped_at, stopped_early=True)
    return Results(results, None)
