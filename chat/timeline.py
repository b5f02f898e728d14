"""What a room shows: its stream's messages with their texts as they are now (chat/versions.py).
Pages for the room page and "Load older"; catch-up for sockets."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from chat import archive, archiver, history, versions
from chat.history import PAGE, Message, id_key, is_message

# Stream entries read per round when looking for a page of messages among change events, and
# the rounds at most: a page may come out shorter (even empty) in a room with many changes in
# a row; "Load older" then goes on from the oldest entry read.
SCAN = 2 * PAGE
MAX_ROUNDS = 8


@dataclass(frozen=True)
class Page:
    messages: list[Message]
    older: str | None  # "Load older" reads before this id; None: this is the beginning
    newest: str | None = None  # the latest entry read (a message or a change): seen up to here


async def page(redis: Redis, slug: str, before: tuple[int, int] | None = None) -> Page:
    """The last PAGE messages before `before` (or the latest), as they are now; where the
    stream runs out, the archive goes on below its oldest entry (no gap, no overlap)."""
    bound = "+" if before is None else history.previous(before)
    entries: list[tuple[str, dict[str, str]]] = []
    found = 0
    exhausted = False
    for _ in range(MAX_ROUNDS):
        if bound is None:
            exhausted = True
            break
        batch = await redis.xrevrange(history.stream_key(slug), max=bound, count=SCAN)
        entries += batch
        found += sum(1 for _, fields in batch if is_message(fields))
        if len(batch) < SCAN:
            exhausted = True
            break
        if found >= PAGE:
            break
        bound = history.previous(id_key(batch[-1][0]))
    messages = [Message.from_entry(i, f) for i, f in reversed(entries) if is_message(f)]
    messages = messages[-PAGE:]
    newest = entries[0][0] if entries else None
    if messages:
        stored = versions.texts(
            await versions.between(redis, slug, messages[0].id, messages[-1].id)
        )
        messages = [_now(m, stored) for m in messages]
    if not exhausted:
        older = messages[0].id if messages else entries[-1][0]
        return Page(messages, older, newest)
    if len(messages) < found:
        return Page(messages, messages[0].id, newest)
    # The stream ends here: older messages are in the archive only.
    below = id_key(entries[-1][0]) if entries else (before or (SQL_MAX, SQL_MAX))
    need = PAGE - len(messages)
    if before is None:  # a room page: with the archive down it still shows what Redis has
        try:
            archived = await archiver.read("before", slug, _clamped(below), need + 1)
        except archiver.ARCHIVE_DOWN as error:
            archiver.log.error("archive: cannot read: %s", error)
            return Page(messages, messages[0].id if messages else None, newest)
    else:  # "Load older" says why it cannot go on
        archived = await archiver.read_or_refuse("before", slug, _clamped(below), need + 1)
    earlier = [from_archive(entry) for entry in reversed(archived[:need])]
    messages = earlier + messages
    more = len(archived) > need
    return Page(messages, messages[0].id if more and messages else None, newest)


SQL_MAX = 2**63 - 1  # SQLite's integers are signed 64-bit; stream ids go to 2**64 - 1


def _clamped(entry_id: tuple[int, int]) -> tuple[int, int]:
    return min(entry_id[0], SQL_MAX), min(entry_id[1], SQL_MAX)


def from_archive(entry: archive.Entry) -> Message:
    return versions.applied(Message.from_entry(entry.id, entry.fields), entry.state)


@dataclass(frozen=True)
class CatchUp:
    new: list[Message]  # after the client's last id: appended, in order
    updated: list[Message]  # changed since, among what the client may show: replaced
    newest: str  # the id the client has now seen up to


async def since(redis: Redis, slug: str, last_id: str, limit: int) -> CatchUp | None:
    """What a client that has seen up to `last_id` is missing; None if more than `limit`
    entries came since (it reloads the latest page instead)."""
    bound = history.following(id_key(last_id))
    if bound is None:
        return CatchUp([], [], last_id)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xrange(history.stream_key(slug), min=bound, count=limit + 1)
        versions.between(pipe, slug, last_id, None, low_inclusive=False)
        pipe.xrange(history.stream_key(slug), count=1)
        entries, members, first = await pipe.execute()
    if len(entries) > limit:
        return None
    if first and id_key(first[0][0]) > id_key(last_id):
        return None  # trimmed past what the client saw (CHAT_HISTORY_KEEP < the limit)
    if not entries:
        return CatchUp([], [], last_id)
    stored = versions.texts(members)
    seen = id_key(last_id)
    touched = list(
        dict.fromkeys(
            f["of"]
            for _, f in entries
            if not is_message(f) and history.parse_id(f.get("of")) and id_key(f["of"]) <= seen
        )
    )
    updated = await versions.current_many(redis, slug, touched) if touched else []
    fresh = [_now(Message.from_entry(i, f), stored) for i, f in entries if is_message(f)]
    return CatchUp(fresh, updated, entries[-1][0])


def _now(message: Message, stored: dict[str, str]) -> Message:
    raw = stored.get(message.id)
    return message if raw is None else versions.applied(message, raw)


@dataclass(frozen=True)
class Around:
    messages: list[Message]  # up to PAGE before the message, it, and up to AFTER after it
    older: str | None
    newer: bool  # more came after the window


AFTER = PAGE // 2


async def around(redis: Redis, slug: str, at: tuple[int, int]) -> Around:
    """The room's history around one message (a search result opened in context)."""
    upto = history.following(at)
    before = await page(redis, slug, None if upto is None else id_key(upto))
    later = await _after(redis, slug, at, AFTER + 1)
    return Around(before.messages + later[:AFTER], before.older, len(later) > AFTER)


async def _after(redis: Redis, slug: str, at: tuple[int, int], limit: int) -> list[Message]:
    """The first `limit` messages after `at`: the archive's and the stream's first ones, merged
    (they overlap where the stream still holds archived messages)."""
    start = history.following(at)
    if start is None:
        return []
    entries = await redis.xrange(history.stream_key(slug), min=start, count=4 * limit)
    recent = [Message.from_entry(i, f) for i, f in entries if is_message(f)][:limit]
    archived = await archiver.read_or_refuse("after", slug, _clamped(at), limit)
    merged = {entry.id: from_archive(entry) for entry in archived}
    if recent:
        stored = versions.texts(await versions.between(redis, slug, recent[0].id, recent[-1].id))
        merged.update({m.id: _now(m, stored) for m in recent})
    return sorted(merged.values(), key=lambda m: id_key(m.id))[:limit]
