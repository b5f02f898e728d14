"""Server-side sessions: a random id in the cookie, the record in Redis, revocable at once."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from quart import current_app
from quart_auth import Action, AuthUser, current_user
from redis.asyncio import Redis

from chat import store


@dataclass(frozen=True)
class Session:
    id: str
    email: str
    created: float

    @property
    def display_name(self) -> str:
        return self.email.split("@", 1)[0]


def session_channel(session_id: str) -> str:
    """Pub/sub channel that tells every worker to close this session's sockets."""
    return f"session:{session_id}"


async def create(redis: Redis, email: str, idle_seconds: int) -> Session:
    session = Session(id=secrets.token_urlsafe(32), email=email, created=time.time())
    await redis.hset(
        f"session:{session.id}", mapping={"email": email, "created": repr(session.created)}
    )
    await redis.expire(f"session:{session.id}", idle_seconds)
    return session


async def load(
    redis: Redis, session_id: str, idle_seconds: int, max_seconds: int
) -> Session | None:
    """The live session, sliding its idle expiry; None when unknown, idle too long or too old."""
    key = f"session:{session_id}"
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(key)
        pipe.expire(key, idle_seconds, xx=True)
        record, _ = await pipe.execute()
    if not record:
        return None
    created = float(record["created"])
    if time.time() - created > max_seconds:
        await redis.delete(key)
        return None
    return Session(id=session_id, email=record["email"], created=created)


async def revoke(redis: Redis, session_id: str) -> None:
    """Delete the record and tell every worker to close the session's sockets."""
    await redis.delete(f"session:{session_id}")
    await redis.publish(session_channel(session_id), "revoke\n")


# Open sockets per session across all workers; entries expire unless their worker refreshes
# them (chat/presence.py heartbeat), so a crashed worker does not use up the allowance.
# KEYS: the session's socket set. ARGV: now, socket id, expiry, cap. Returns 1 if claimed.
_CLAIM_SOCKET = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('EXPIRE', KEYS[1], 120)
return 1
"""


async def claim_socket(redis: Redis, session_id: str, socket_id: str, cap: int, ttl: int) -> bool:
    now = time.time()
    key = f"session-sockets:{session_id}"
    return bool(await redis.eval(_CLAIM_SOCKET, 1, key, now, socket_id, now + ttl, cap))


async def release_socket(redis: Redis, session_id: str, socket_id: str) -> None:
    await redis.zrem(f"session-sockets:{session_id}", socket_id)


class ChatUser(AuthUser):
    """quart-auth user whose auth id is a session id checked against Redis on each request."""

    def __init__(self, auth_id: str | None, action: Action = Action.PASS) -> None:
        super().__init__(auth_id, action)
        self._session: Session | None = None
        self._loaded = False

    async def session(self) -> Session | None:
        if not self._loaded:
            self._loaded = True
            if self.auth_id:
                config = current_app.config
                self._session = await load(
                    store.redis(),
                    self.auth_id,
                    config["SESSION_IDLE_SECONDS"],
                    config["SESSION_MAX_SECONDS"],
                )
        return self._session

    @property
    async def is_authenticated(self) -> bool:
        return await self.session() is not None


async def current_session() -> Session | None:
    """The signed-in person's live session in this request or websocket, if any."""
    user = current_user._get_current_object()  # type: ignore[attr-defined]
    return await user.session() if isinstance(user, ChatUser) else None
