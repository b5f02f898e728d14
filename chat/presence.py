"""Who is in a room: one entry per open socket, with an expiry each worker keeps refreshing.

Two sorted sets per room: `lex` (score 0, member "email\\x1fsocket") finds a user's sockets by
prefix; `exp` (score = expiry time) lets any worker drop the sockets of a crashed worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from quart import Quart
from redis.asyncio import Redis

from chat import store

log = logging.getLogger("chat.presence")

TTL_SECONDS = 30
HEARTBEAT_SECONDS = 10
SEP = "\x1f"

# Remove expired sockets; return the users who thereby have no socket left.
_EXPIRE = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
local left = {}
for _, member in ipairs(gone) do
  redis.call('ZREM', KEYS[1], member)
  redis.call('ZREM', KEYS[2], member)
end
for _, member in ipairs(gone) do
  local user = string.match(member, '^(.-)\\31')
  local prefix = user .. '\\31'
  if #redis.call('ZRANGEBYLEX', KEYS[1], '[' .. prefix, '[' .. prefix .. '\\255', 'LIMIT', 0, 1) == 0
     and not left[user] then
    left[user] = true
    table.insert(left, user)
  end
end
return left
"""

# KEYS: lex, exp. ARGV: user, socket, expires. Returns 1 if this is the user's first socket.
_JOIN = """
local prefix = ARGV[1] .. '\\31'
local had = #redis.call('ZRANGEBYLEX', KEYS[1], '[' .. prefix, '[' .. prefix .. '\\255', 'LIMIT', 0, 1)
redis.call('ZADD', KEYS[1], 0, prefix .. ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], prefix .. ARGV[2])
if had == 0 then return 1 else return 0 end
"""

# KEYS: lex, exp. ARGV: user, socket. Returns 1 if that was the user's last socket.
_LEAVE = """
redis.call('ZREM', KEYS[1], ARGV[1] .. '\\31' .. ARGV[2])
local removed = redis.call('ZREM', KEYS[2], ARGV[1] .. '\\31' .. ARGV[2])
local prefix = ARGV[1] .. '\\31'
local still = #redis.call('ZRANGEBYLEX', KEYS[1], '[' .. prefix, '[' .. prefix .. '\\255', 'LIMIT', 0, 1)
if removed == 1 and still == 0 then return 1 else return 0 end
"""


def _keys(slug: str) -> tuple[str, str]:
    return f"presence:{slug}:lex", f"presence:{slug}:exp"


async def join(redis: Redis, slug: str, user: str, socket_id: str) -> bool:
    expires = time.time() + TTL_SECONDS
    first = await redis.eval(_JOIN, 2, *_keys(slug), user, socket_id, expires)
    return bool(first)


async def leave(redis: Redis, slug: str, user: str, socket_id: str) -> bool:
    return bool(await redis.eval(_LEAVE, 2, *_keys(slug), user, socket_id))


async def expire(redis: Redis, slug: str) -> list[str]:
    """Drop sockets whose worker stopped refreshing them; the users now gone."""
    return list(await redis.eval(_EXPIRE, 2, *_keys(slug), time.time()))


async def online(redis: Redis, slug: str) -> list[str]:
    """Emails with at least one live socket, sorted."""
    members: list[str] = await redis.zrange(_keys(slug)[0], 0, -1)
    return sorted({member.split(SEP, 1)[0] for member in members})


class LocalSockets:
    """This worker's open sockets, so it can refresh their expiry and sweep crashed peers."""

    def __init__(self) -> None:
        self.by_room: dict[str, dict[str, tuple[str, str]]] = {}  # slug -> socket -> user, session

    def add(self, slug: str, socket_id: str, user: str, session_id: str) -> None:
        self.by_room.setdefault(slug, {})[socket_id] = (user, session_id)

    def remove(self, slug: str, socket_id: str) -> None:
        sockets = self.by_room.get(slug, {})
        sockets.pop(socket_id, None)
        if not sockets:
            self.by_room.pop(slug, None)

    async def heartbeat(self, redis: Redis) -> None:
        expires = time.time() + TTL_SECONDS
        async with redis.pipeline(transaction=False) as pipe:
            for slug, sockets in self.by_room.items():
                members = {f"{user}{SEP}{sid}": expires for sid, (user, _) in sockets.items()}
                if members:
                    pipe.zadd(_keys(slug)[1], members, xx=True)
                for sid, (_, session_id) in sockets.items():
                    pipe.zadd(f"session-sockets:{session_id}", {sid: expires}, xx=True)
                    pipe.expire(f"session-sockets:{session_id}", TTL_SECONDS * 2)
            await pipe.execute()


def init_app(app: Quart) -> None:
    local = LocalSockets()
    app.extensions["presence"] = local

    @app.while_serving
    async def refresh_presence():  # type: ignore[no-untyped-def]
        task = asyncio.create_task(_heartbeats(app, local))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _heartbeats(app: Quart, local: LocalSockets) -> None:
    from chat.live_room import announce_departures  # circular at import time

    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        try:
            redis = store.redis(app)
            await local.heartbeat(redis)
            for slug in list(local.by_room):
                gone = await expire(redis, slug)
                if gone:
                    await announce_departures(app, slug, gone)
        except store.REDIS_DOWN as error:
            log.warning("presence heartbeat failed: %s", error)
        except Exception:
            log.exception("presence heartbeat failed")
