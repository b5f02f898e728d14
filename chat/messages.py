"""Posting a message: save to the room's stream, render once, publish to every worker."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from quart import current_app

from chat import history, i18n, store
from chat.fragments import render_fragment
from chat.sessions import Session

# Stands for the stream id in the rendered fragment until Redis assigns it.
ID_PLACEHOLDER = "\x00msgid\x00"

# Save first, then broadcast, atomically and in one round trip; a repeated client id
# (a resend after a reconnect) returns the first id and stores nothing.
# KEYS: stream, dedupe key. ARGV: maxlen, channel, html, placeholder, dedupe ttl, fields...
_POST = """
local existing = redis.call('GET', KEYS[2])
if existing then return {0, existing} end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 6))
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
redis.call('PUBLISH', ARGV[2], id .. '\\n' .. table.concat(out))
return {1, id}
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


def room_channel(slug: str) -> str:
    return f"room:{slug}"


async def render_frame(messages: list[history.Message]) -> str:
    """The websocket frame that upserts these messages into #messages (by id, in order)."""
    return await render_fragment("rooms/_messages_frame.html", messages=messages)


async def post_message(slug: str, session: Session, body: str, client_id: str) -> Posted:
    now_ms = int(time.time() * 1000)
    draft = history.Message(
        id=ID_PLACEHOLDER,
        author=session.email,
        person=session.person,
        name=session.display_name,
        body=body,
        sent_at=datetime.fromtimestamp(now_ms / 1000, UTC),
    )
    with i18n.use(None):  # for everyone: times become markers each viewer's copy fills in
        html = await render_frame([draft])
    fields = ["author", session.email, "pid", session.person, "name", session.display_name]
    fields += ["body", body]
    fields += ["ts", str(now_ms), "cid", client_id]
    created, entry_id = await store.redis().eval(
        _POST,
        2,
        history.stream_key(slug),
        f"dedupe:{slug}:{session.id}:{client_id}",
        current_app.config["HISTORY_MAXLEN"],
        room_channel(slug),
        html,
        ID_PLACEHOLDER,
        DEDUPE_SECONDS,
        *fields,
    )
    return Posted(id=entry_id, duplicate=not created)
