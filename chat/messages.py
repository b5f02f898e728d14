"""Posting a message: save to the room's stream, render once, publish to every worker."""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from quart import current_app

from chat import history, i18n, membership, mention_mail, mentions, store, unread
from chat.fragments import render_fragment
from chat.membership import Room
from chat.sessions import Session

# Stands for the stream id in the rendered fragment until Redis assigns it.
ID_PLACEHOLDER = "\x00msgid\x00"

# Save first, then broadcast, atomically and in one round trip; a repeated client id
# (a resend after a reconnect) returns the first id and stores nothing. The message takes the
# room's next number (chat/unread.py), and the published item starts with "<id> <number>
# <mentioned people,>": what a worker needs for unread counts without parsing the HTML.
# KEYS: stream, dedupe key, room counter. ARGV: maxlen, channel, html, placeholder, dedupe
# ttl, mentioned people, fields...
_POST = """
local existing = redis.call('GET', KEYS[2])
if existing then return {0, existing, 0} end
local n = redis.call('INCR', KEYS[3])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'n', n, unpack(ARGV, 7))
redis.call('SET', KEYS[2], id, 'EX', tonumber(ARGV[5]))
local html, mark, out, from = ARGV[3], ARGV[4], {}, 1
while true do
  local s, e = string.find(html, mark, from, true)
  if not s then break end
  table.insert(out, string.sub(html, from, s - 1))
  table.insert(out, id)
  from = e + 1
end
table.insert(out, string.sub(html, from))
redis.call('PUBLISH', ARGV[2], id .. ' ' .. n .. ' ' .. ARGV[6] .. '\\n' .. table.concat(out))
return {1, id, n}
"""

DEDUPE_SECONDS = 24 * 3600
# Client ids come from the compose form (server-made); anything else gets a fresh one.
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def new_id() -> str:
    return secrets.token_urlsafe(12)


@dataclass(frozen=True)
class Posted:
    id: str
    duplicate: bool
    seq: int = 0


def room_channel(slug: str) -> str:
    return f"room:{slug}"


async def render_frame(messages: list[history.Message]) -> str:
    """The websocket frame that upserts these messages into #messages (by id, in order)."""
    return await render_fragment("rooms/_messages_frame.html", messages=messages)


async def post_message(room: Room, session: Session, body: str, client_id: str) -> Posted:
    redis = store.redis()
    now_ms = int(time.time() * 1000)
    named = await mentions.resolve(redis, room.slug, body)
    draft = history.Message(
        id=ID_PLACEHOLDER,
        author=session.email,
        person=session.person,
        name=session.display_name,
        body=body,
        sent_at=datetime.fromtimestamp(now_ms / 1000, UTC),
        mentions=named,
    )
    with i18n.use(None):  # for everyone: times become markers each viewer's copy fills in
        html = await render_frame([draft])
    fields = ["author", session.email, "pid", session.person, "name", session.display_name]
    fields += ["body", body]
    fields += ["ts", str(now_ms), "cid", client_id]
    if named:
        fields += ["men", json.dumps(named, ensure_ascii=False)]
    mentioned = [
        person for person in dict.fromkeys(p for _, p in named) if person != session.person
    ]
    created, entry_id, seq = await redis.eval(
        _POST,
        3,
        history.stream_key(room.slug),
        f"dedupe:{room.slug}:{session.id}:{client_id}",
        unread.seq_key(room.slug),
        current_app.config["HISTORY_MAXLEN"],
        room_channel(room.slug),
        html,
        ID_PLACEHOLDER,
        DEDUPE_SECONDS,
        ",".join(mentioned),
        *fields,
    )
    posted = Posted(id=entry_id, duplicate=not created, seq=int(seq))
    if created:
        await _tell_the_absent(room, session, body, posted, mentioned, now_ms)
    return posted


async def _tell_the_absent(
    room: Room, session: Session, body: str, posted: Posted, mentioned: list[str], now_ms: int
) -> None:
    """Mentions count in the mentioned people's sidebars; the absent get an email later."""
    redis = store.redis()
    if mentioned:
        await unread.add_mentions(redis, mentioned, room.slug, posted.seq)
    recipients = set(mentioned)
    if room.kind == membership.DIRECT:  # a direct message is meant for every other member
        recipients |= set(room.people) - {session.person}
    delay = int(current_app.config["MENTION_EMAIL_DELAY_SECONDS"])
    if recipients and delay:
        item = mention_mail.Missed(
            room.slug, posted.id, posted.seq, session.display_name, body, now_ms
        )
        await mention_mail.schedule(redis, sorted(recipients), item, delay)
