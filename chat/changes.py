"""Changing a message after it was sent: its author edits or deletes it (an admin may delete
any), and anyone who reads the room reacts. Each change is rendered once for everyone and
stored, logged and published by one versioned script (chat/versions.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from quart import current_app

from chat import history, i18n, mentions, store, versions
from chat.fragments import render_fragment
from chat.history import Message
from chat.membership import Room
from chat.messages import room_channel
from chat.problems import ShownError

# Two people changing one message at once: the loser renders again; a few rounds settle it.
MAX_TRIES = 8


async def edit(room: Room, person: str, message_id: str, body: str) -> Message:
    """Replace the text of one's own message (mentions are read again; nobody is notified)."""
    named = await mentions.resolve(store.redis(), room.slug, body)

    def edited(message: Message) -> Message | None:
        _own_and_present(message, person)
        if message.body == body:
            return None
        return versions.next_version(
            message, body=body, mentions=named, edited_at=datetime.now(UTC)
        )

    return await _apply(room, message_id, edited, "edit")


async def delete(room: Room, person: str, message_id: str, admin: bool) -> Message:
    """Replace a message by "Message deleted" for everyone; its text leaves Redis."""

    def deleted(message: Message) -> Message | None:
        if message.deleted:
            return None
        if message.person != person and not admin:
            raise ShownError(403, "not_your_message")
        return versions.next_version(
            message, body="", mentions=(), reactions=(), deleted=True, edited_at=None
        )

    return await _apply(room, message_id, deleted, "delete")


async def react(
    room: Room, person: str, name: str, message_id: str, emoji: str, on: bool
) -> Message:
    """Add (`on`) or take back one's reaction; pressing twice changes nothing the second time."""
    if emoji not in history.REACTIONS:
        raise ShownError(400, "unknown_reaction")

    def reacted(message: Message) -> Message | None:
        if message.deleted:
            raise ShownError(409, "message_deleted")
        who = message.reactors(emoji)
        has = any(p == person for p, _ in who)
        if has == on:
            return None
        changed = (*who, (person, name)) if on else tuple(w for w in who if w[0] != person)
        table = dict(message.reactions) | {emoji: changed}
        ordered = tuple((e, table[e]) for e in history.REACTIONS if table.get(e))
        return versions.next_version(message, reactions=ordered)

    return await _apply(room, message_id, reacted, "react")


def _own_and_present(message: Message, person: str) -> None:
    if message.person != person:
        raise ShownError(403, "not_your_message")
    if message.deleted:
        raise ShownError(409, "message_deleted")


async def _apply(
    room: Room, message_id: str, change: Callable[[Message], Message | None], kind: str
) -> Message:
    redis = store.redis()
    maxlen = int(current_app.config["HISTORY_MAXLEN"])
    for _ in range(MAX_TRIES):
        before = await versions.current(redis, room.slug, message_id)
        if before is None:
            raise ShownError(404, "no_such_message")
        after = change(before)
        if after is None:
            return before
        with i18n.use(None):  # for everyone: words and times become markers
            html = await render_fragment(
                "rooms/_message.html", m=after, slug=room.slug, update=True
            )
        outcome, _ = await versions.change(
            redis, room.slug, after, kind, html, room_channel(room.slug), maxlen
        )
        if outcome == versions.CHANGED:
            return after
        if outcome == versions.GONE:
            raise ShownError(404, "no_such_message")
    raise ShownError(503, "message_busy")
