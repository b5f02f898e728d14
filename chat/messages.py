"""Posting a message: save to the room's stream, render once, publish to every worker."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from quart import current_app

from chat import (
    archiver,
    history,
    i18n,
    keys,
    membership,
    mention_mail,
    mentions,
    store,
    unread,
    versions,
)
from chat.fragments import render_fragment
from chat.membership import Room
from chat.sessions import Session
from chat.to_the_end import to_the_end

log = logging.getLogger("chat.messages")

# Stands for the stream id in the rendered fragment until Redis assigns it.
ID_PLACEHOLDER = "\x00msgid\x00"

# Save first, then broadcast, atomically and in one round trip; a repeated client id
# (a resend after a reconnect) returns the first id and stores nothing. The message takes the
# room's next number (chat/unread.py), and the published item starts with "<id> <number>
# <mentioned people,>": what a worker needs for unread counts without parsing the HTML. Its
# text goes to the room's version set (chat/versions.py), the rest to the stream.
# The stream is trimmed only below what every archive has read (chat/archiver.py).
# KEYS: stream, dedupe key, room counter, version set (one room, one slot). ARGV: maxlen,
# channel, html, placeholder, dedupe ttl, mentioned people, text JSON, entries kept, fields...
_POST = (
    versions.PAD_LUA
    + """
local existing = redis.call('GET', KEYS[2])
if existing then return {0, existing, 0} end
local n = redis.call('INCR', KEYS[3])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'n', n, unpack(ARGV, 9))
redis.call('SET', KEYS[2], id, 'EX', tonumber(ARGV[5]))
"""
    + archiver.TRIM_ARCHIVED
    + versions.STORE_TEXT
    + """
local html, mark, out, from = ARGV[3], ARGV[4], {}, 1
while true do
  local s, e = string.find(html, mark, from, true)
  if not s then break end
  table.insert(out, string.sub(html, from, s - 1))
  table.insert(out, id)
  from = e + 1
end
table.insert(out, string.sub(html, from))
redis.call('SPUBLISH', ARGV[2], id .. ' ' .. n .. ' ' .. ARGV[6] .. '\\n' .. table.concat(out))
return {1, id, n}
"""
)

DEDUPE_SECONDS = 24 * 3600
# Client ids come from the compose form (server-made); anything else gets a fresh one.
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def new_id() -> str:
    return secrets.token_urlsafe(12)


@dataclass(frozen=True)
class Author:
    """Who posts: a person through one of their sessions, or a bot through its hook."""

    person: str
    name: str
    email: str  # "" for a bot
    scope: str  # what a client id is unique within: the session, or the bot
    bot: bool = False

    @classmethod
    def of(cls, session: Session) -> Author:
        return cls(session.person, session.display_name, session.email, session.id)


@dataclass(frozen=True)
class Posted:
    id: str
    duplicate: bool
    seq: int = 0


def room_channel(slug: str) -> str:
    return keys.room(slug, "live")


async def render_frame(
    slug: str,
    messages: Sequence[history.Message],
    updated: Sequence[history.Message] = (),
) -> str:
    """The websocket frame that upserts these messages into #messages (by id, in order), and
    replaces the `updated` ones where the client shows them."""
    return await render_fragment(
        "rooms/_messages_frame.html", messages=messages, updated=updated, slug=slug
    )


async def post_message(room: Room, author: Author | Session, body: str, client_id: str) -> Posted:
    """Store the message and tell whoever must hear of it, to the end even when the caller is
    cancelled (a socket closed right after sending): never a stored message whose mentions
    and emails did not go out."""
    return await to_the_end(_post(room, author, body, client_id))


async def _post(room: Room, author: Author | Session, body: str, client_id: str) -> Posted:
    if isinstance(author, Session):
        author = Author.of(author)
    redis = store.redis()
    now_ms = int(time.time() * 1000)
    named = await mentions.resolve(redis, room.slug, body)
    draft = history.Message(
        id=ID_PLACEHOLDER,
        author=author.email,
        person=author.person,
        name=author.name,
        bot=author.bot,
        body=body,
        sent_at=datetime.fromtimestamp(now_ms / 1000, UTC),
        mentions=named,
    )
    with i18n.use(None):  # for everyone: times become markers each viewer's copy fills in
        html = await render_frame(room.slug, [draft])
    # No address: the person id says who it was (an address kept in every message would
    # outlive the account, as a stream entry cannot be rewritten).
    fields = ["pid", author.person, "name", author.name]
    if author.bot:
        fields += ["bot", "1"]
    fields += ["ts", str(now_ms), "cid", client_id]
    if named:
        fields += ["men", json.dumps(named, ensure_ascii=False)]
    mentioned = [person for person in dict.fromkeys(p for _, p in named) if person != author.person]
    created, entry_id, seq = await redis.eval(
        _POST,
        4,
        history.stream_key(room.slug),
        keys.room(room.slug, f"dedupe:{author.scope}:{client_id}"),
        unread.seq_key(room.slug),
        versions.versions_key(room.slug),
        current_app.config["HISTORY_MAXLEN"],
        room_channel(room.slug),
        html,
        ID_PLACEHOLDER,
        DEDUPE_SECONDS,
        ",".join(mentioned),
        versions.first_text(body),
        min(current_app.config["HISTORY_KEEP"], current_app.config["HISTORY_MAXLEN"]),
        *fields,
    )
    posted = Posted(id=entry_id, duplicate=not created, seq=int(seq))
    if created:
        await _tell_the_absent(room, author, posted, mentioned, now_ms)
    if created and (posted.seq == 1 or posted.seq % archiver.LIST_EVERY == 0):
        try:
            await archiver.list_stream(redis, room.slug)
        except store.REDIS_DOWN as error:  # stored all the same; listed again at the 64th
            # message, and every archiver looks for unlisted streams when it starts
            log.warning("room %s not listed for the archives yet: %s", room.slug, error)
    return posted


async def _tell_the_absent(
    room: Room, author: Author, posted: Posted, mentioned: list[str], now_ms: int
) -> None:
    """Mentions count in the mentioned people's sidebars; the absent get an email later."""
    redis = store.redis()
    if mentioned:
        await unread.add_mentions(redis, mentioned, room.slug, posted.seq)
    recipients = set(mentioned)
    if room.kind == membership.DIRECT:  # a direct message is meant for every other member
        recipients |= set(room.people) - {author.person}
    delay = int(current_app.config["MENTION_EMAIL_DELAY_SECONDS"])
    if recipients and delay:
        item = mention_mail.Missed(room.slug, posted.id, posted.seq, author.name, "", now_ms)
        await mention_mail.schedule(redis, sorted(recipients), item, delay)
