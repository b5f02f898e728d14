"""A room's whole history as a download, read a batch at a time: the archive first, then what
the room's stream holds beyond it (not archived yet), up to the newest entry when it began."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from chat import archiver, history, timeline, versions
from chat.history import Message, id_key, is_message

BATCH = 1000


async def messages(redis: Redis, slug: str) -> AsyncIterator[Message]:
    """Every message of the room there is, oldest first, as it is now."""
    newest = await redis.xrevrange(history.stream_key(slug), count=1)
    last: tuple[int, int] | None = None
    while True:
        batch = await archiver.read_or_refuse("after", slug, last or (-1, -1), BATCH)
        for entry in batch:
            yield timeline.from_archive(entry)
        if batch:
            last = id_key(batch[-1].id)
        if len(batch) < BATCH:
            break
    if not newest:
        return
    start = "-" if last is None else history.following(last)
    while start is not None:
        entries = await redis.xrange(
            history.stream_key(slug), min=start, max=newest[0][0], count=BATCH
        )
        found = [Message.from_entry(i, f) for i, f in entries if is_message(f)]
        if found:
            stored = versions.texts(await versions.between(redis, slug, found[0].id, found[-1].id))
            for message in found:
                raw = stored.get(message.id)
                yield message if raw is None else versions.applied(message, raw)
        if len(entries) < BATCH:
            break
        start = history.following(id_key(entries[-1][0]))


def as_json_line(message: Message) -> str:
    return (
        json.dumps(
            {
                "id": message.id,
                "time": message.sent_at.isoformat(timespec="milliseconds"),
                "author": message.name,
                "person": message.person,
                "bot": message.bot,
                "text": None if message.deleted else message.body,
                "deleted": message.deleted,
                "edited": message.edited_at.isoformat(timespec="seconds")
                if message.edited_at
                else None,
                "reactions": {emoji: [name for _, name in who] for emoji, who in message.reactions},
            },
            ensure_ascii=False,
        )
        + "\n"
    )


def as_text_line(message: Message, deleted_word: str) -> str:
    when = message.sent_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    text = f"({deleted_word})" if message.deleted else message.body.replace("\n", "\n    ")
    return f"[{when}] {message.name}: {text}\n"
