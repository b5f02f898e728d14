"""What a message says now: its text, edits, deletion and reactions, apart from the stream.

The room's stream keeps who sent what when (and the change events); the text lives in the
room's version set `{r:<slug>}:versions`, a sorted set of "<padded id>\\x1f<JSON>" in id order,
so a page reads one range of each and an edit or deletion replaces the member: the old text is
gone from Redis (a stream entry cannot be rewritten, and XDEL leaves its bytes in place until
the whole node is trimmed). Every change also appends an event ("k" = kind, "of" = the
message id) to the stream, which a client that reconnects with ?after= replays as "show the
current version of that message", and publishes the message's new rendering. One script does
it all, after checking that the version it was rendered from is still the current one: of two
changes at once, the second is rendered again, so every viewer ends on the same rendering.

Messages stored before the version set existed keep their text in the stream entry.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from chat import history
from chat.history import Message

SEP = "\x1f"

# The members of one id lie between "<pad>\x1f" and "<pad> " (0x1f < 0x20 < any digit).
PAD_LUA = """
local function pad(id)
  local ms, seq = string.match(id, '(%d+)-(%d+)')
  return string.rep('0', 20 - #ms) .. ms .. '-' .. string.rep('0', 20 - #seq) .. seq
end
"""

# KEYS: stream, versions. ARGV: id, expected version, new JSON, kind, channel, html, maxlen.
# Returns {1, event id}, {0} when another change came first, {-1} when the message is gone.
_CHANGE = (
    PAD_LUA
    + """
local padded = pad(ARGV[1])
local found = redis.call('ZRANGEBYLEX', KEYS[2], '[' .. padded .. '\\31', '(' .. padded .. ' ')
local version = 0
if #found > 0 then
  version = tonumber(cjson.decode(string.sub(found[1], #padded + 2)).v) or 0
elseif #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then
  return {-1}
end
if version ~= tonumber(ARGV[2]) then return {0} end
if #found > 0 then redis.call('ZREM', KEYS[2], found[1]) end
redis.call('ZADD', KEYS[2], 0, padded .. '\\31' .. ARGV[3])
local eid = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[7], '*', 'k', ARGV[4], 'of', ARGV[1])
redis.call('SPUBLISH', ARGV[5], eid .. '\\n' .. ARGV[6])
return {1, eid}
"""
)

# For the post script (chat/messages.py): the new message's text, and now and then the texts
# of messages the stream has trimmed away. KEYS[4] is the version set, ARGV[7] the text JSON.
STORE_TEXT = """
redis.call('ZADD', KEYS[4], 0, pad(id) .. '\\31' .. ARGV[7])
if n % 64 == 0 then
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  if first then redis.call('ZREMRANGEBYLEX', KEYS[4], '-', '(' .. pad(first[1])) end
end
"""

CHANGED, CONFLICT, GONE = 1, 0, -1


def versions_key(slug: str) -> str:
    return f"{{r:{slug}}}:versions"


def padded(entry_id: str) -> str:
    """A stream id that sorts as text the way ids sort as numbers."""
    millis, _, seq = entry_id.partition("-")
    return f"{millis.zfill(20)}-{(seq or '0').zfill(20)}"


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def first_text(body: str) -> str:
    """The JSON a new message's text is stored as."""
    return json.dumps({"v": 0, "b": body}, ensure_ascii=False)


def state_of(message: Message) -> str:
    """The JSON of what may change about a message, as it is now."""
    state: dict[str, Any] = {"v": message.version}
    if message.deleted:
        state["d"] = 1
    else:
        state["b"] = message.body
        state["men"] = [list(pair) for pair in message.mentions]
        if message.reactions:
            state["r"] = {emoji: [list(who) for who in whom] for emoji, whom in message.reactions}
    if message.edited_at is not None:
        state["e"] = _millis(message.edited_at)
    return json.dumps(state, ensure_ascii=False)


def applied(message: Message, raw: str) -> Message:
    """The stream's message with its stored text and changes."""
    try:
        state = json.loads(raw)
    except ValueError:
        return message
    if state.get("d"):
        return replace(message, body="", mentions=(), deleted=True, version=int(state["v"]))
    reactions = state.get("r") or {}
    edited = state.get("e")
    mentions = state.get("men")
    return replace(
        message,
        body=str(state.get("b", "")),
        mentions=message.mentions
        if mentions is None
        else tuple((str(name), str(person)) for name, person in mentions),
        edited_at=datetime.fromtimestamp(edited / 1000, UTC) if edited else None,
        reactions=tuple(
            (emoji, tuple((str(p), str(n)) for p, n in reactions[emoji]))
            for emoji in history.REACTIONS
            if reactions.get(emoji)
        ),
        version=int(state.get("v", 0)),
    )


def _split(member: str) -> tuple[str, str]:
    pad, _, raw = member.partition(SEP)
    millis, _, seq = pad.partition("-")
    return f"{int(millis)}-{int(seq)}", raw


def _low(entry_id: str | None, inclusive: bool) -> str:
    if entry_id is None:
        return "-"
    return "[" + padded(entry_id) + ("" if inclusive else " ")


def _high(entry_id: str | None, inclusive: bool) -> str:
    if entry_id is None:
        return "+"
    return "(" + padded(entry_id) + (" " if inclusive else "")


def between(
    pipe: Any, slug: str, low: str | None, high: str | None, *, low_inclusive: bool = True
) -> Any:
    """Queue (on a client or pipeline) the read of the texts with ids from `low` up to `high`
    (included), None being open; `texts` makes its answer a dict by id."""
    return pipe.zrangebylex(versions_key(slug), _low(low, low_inclusive), _high(high, True))


def texts(members: list[str]) -> dict[str, str]:
    return dict(map(_split, members))


async def current(redis: Redis, slug: str, entry_id: str) -> Message | None:
    """The message as everyone sees it now, or None (no such message, or trimmed)."""
    found = await current_many(redis, slug, [entry_id])
    return found[0] if found else None


async def current_many(redis: Redis, slug: str, ids: list[str]) -> list[Message]:
    """These messages as everyone sees them now (those that exist), in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for entry_id in ids:
            pipe.xrange(history.stream_key(slug), min=entry_id, max=entry_id)
            between(pipe, slug, entry_id, entry_id)
        found = await pipe.execute()
    messages = []
    for entries, members in zip(found[::2], found[1::2], strict=True):
        if entries and history.is_message(entries[0][1]):
            message = Message.from_entry(*entries[0])
            raw = texts(members).get(message.id)
            messages.append(message if raw is None else applied(message, raw))
    return messages


async def change(
    redis: Redis, slug: str, changed: Message, kind: str, html: str, channel: str, maxlen: int
) -> tuple[int, str]:
    """Store `changed` (rendered as `html`) if the message is still at the version before it.

    (CHANGED, event id), (CONFLICT, "") or (GONE, "")."""
    outcome = await redis.eval(
        _CHANGE,
        2,
        history.stream_key(slug),
        versions_key(slug),
        changed.id,
        changed.version - 1,
        state_of(changed),
        kind,
        channel,
        html,
        maxlen,
    )
    return int(outcome[0]), (str(outcome[1]) if len(outcome) > 1 else "")


def next_version(message: Message, **changes: Any) -> Message:
    return replace(message, version=message.version + 1, **changes)
