"""What a room shows: its stream's messages with their texts as they are now (chat/versions.py).
Pages for the room page and "Load older"; catch-up for sockets."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from chat import history, versions
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
    """The last PAGE messages before `before` (or the latest), as they are now."""
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
    if not messages:
        older = None if exhausted or not entries else entries[-1][0]
        return Page([], older, entries[0][0] if entries else None)
    stored = versions.texts(await versions.between(redis, slug, messages[0].id, messages[-1].id))
    more = not exhausted or len(messages) < found
    return Page(
        [_now(m, stored) for m in messages],
        messages[0].id if more else None,
        entries[0][0],
    )


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
        entries, members = await pipe.execute()
    if len(entries) > limit:
        return None
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
