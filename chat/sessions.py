"""Server-side sessions: a random id in the cookie, the record in Redis, revocable at once.

Keys of one session share the hash tag `{<id>}`: its record, its open sockets, its send bucket
and its handshake counter, so the per-message check below is one single-slot script.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

from quart import current_app
from quart_auth import Action, AuthUser, current_user
from redis.asyncio import Redis

from chat import ratelimit, store
from chat.people import default_name, person_key


@dataclass(frozen=True)
class Session:
    id: str
    email: str
    person: str
    created: float
    # The person's saved choices, copied in so a request needs one read ("" = not chosen).
    locale: str = ""
    time_zone: str = ""
    name: str = ""  # the display name chosen in /settings ("" = none)

    @property
    def display_name(self) -> str:
        return self.name or default_name(self.email)

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2]


def session_key(session_id: str, name: str = "session") -> str:
    return f"{name}:{{{session_id}}}"


def session_channel(session_id: str) -> str:
    """Pub/sub channel that tells every worker to close this session's sockets."""
    return f"revoke:{{{session_id}}}"


async def create(
    redis: Redis,
    email: str,
    person: str,
    idle_seconds: int,
    cap: int,
    user_agent: str = "",
    ip: str = "",
) -> Session:
    """A new session; beyond `cap` live sessions for the person, the oldest ones end.
    `user_agent` (cleaned) and `ip` are kept for the person's list of where they are signed in."""
    locale, time_zone, name = await redis.hmget(
        person_key(person, "profile"), ["locale", "tz", "name"]
    )
    session = Session(
        id=secrets.token_urlsafe(32),
        email=email,
        person=person,
        created=time.time(),
        locale=locale or "",
        time_zone=time_zone or "",
        name=name or "",
    )
    key = session_key(session.id)
    record = {"email": email, "person": person, "created": repr(session.created)}
    record.update(ua=user_agent, ip=ip, seen=repr(session.created))
    record.update(locale=session.locale, tz=session.time_zone, name=session.name)
    # Not a transaction: the record and the person's index live in different cluster slots.
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(key, mapping=record)
        pipe.expire(key, idle_seconds)
        pipe.zadd(person_key(person, "sessions"), {session.id: session.created})
        await pipe.execute()
    await _end_oldest_beyond(redis, person, cap)
    return session


async def _end_oldest_beyond(redis: Redis, person: str, cap: int) -> None:
    listed: list[str] = await redis.zrange(person_key(person, "sessions"), 0, -1)
    async with redis.pipeline(transaction=False) as pipe:
        for session_id in listed:
            pipe.exists(session_key(session_id))
        alive = await pipe.execute()
    gone = [sid for sid, exists in zip(listed, alive, strict=True) if not exists]
    if gone:  # expired by idleness: only the index still names them
        await redis.zrem(person_key(person, "sessions"), *gone)
    live = [sid for sid, exists in zip(listed, alive, strict=True) if exists]
    for session_id in live[: max(0, len(live) - cap)]:  # oldest first
        await revoke(redis, session_id, person)


async def load(
    redis: Redis, session_id: str, idle_seconds: int, max_seconds: int
) -> Session | None:
    """The live session, sliding its idle expiry; None when unknown, idle too long or too old."""
    key = session_key(session_id)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(key)
        pipe.expire(key, idle_seconds, xx=True)
        record, _ = await pipe.execute()
    if not record or not record.get("person"):  # sessions from before person ids: sign in again
        return None
    created, now = float(record["created"]), time.time()
    if now - created > max_seconds:
        await redis.delete(key)
        return None
    if now - float(record.get("seen") or 0) > SEEN_EVERY_SECONDS:
        await touch(redis, session_id, now)
    return Session(
        session_id,
        record["email"],
        record["person"],
        created,
        locale=record.get("locale", ""),
        time_zone=record.get("tz", ""),
        name=record.get("name", ""),
    )


async def alive(redis: Redis, session_ids: list[str], max_seconds: int) -> list[bool]:
    """Which of these sessions still exist and are within their lifetime (one round trip)."""
    async with redis.pipeline(transaction=False) as pipe:
        for session_id in session_ids:
            pipe.hget(session_key(session_id), "created")
        created = await pipe.execute()
    now = time.time()
    return [bool(found) and now - float(found) <= max_seconds for found in created]


# How often a session's last activity is written: a request, a socket's heartbeat.
SEEN_EVERY_SECONDS = 60

# Only into a session that still exists: HSET alone would bring an ended one back, forever.
_SET_IF_ALIVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


def touch(client: Any, session_id: str, now: float) -> Any:
    """The session was active at `now` (if it still exists): queued on a pipeline, or a
    coroutine to await on a client."""
    return client.eval(_SET_IF_ALIVE, 1, session_key(session_id), "seen", repr(now))


async def save_choices(redis: Redis, person: str, locale: str, time_zone: str) -> None:
    """The person's language and time zone, in their profile and in every live session."""
    await _save_everywhere(redis, person, {"locale": locale, "tz": time_zone})


async def save_name(redis: Redis, person: str, name: str) -> None:
    """The person's display name, in their profile and in every live session: what they post
    from now on, in any tab, carries it (a socket's Session is refreshed by `check_send`)."""
    await _save_everywhere(redis, person, {"name": name})


async def _save_everywhere(redis: Redis, person: str, fields: dict[str, str]) -> None:
    await redis.hset(person_key(person, "profile"), mapping=fields)
    listed: list[str] = await redis.zrange(person_key(person, "sessions"), 0, -1)
    pairs = [part for field, value in fields.items() for part in (field, value)]
    async with redis.pipeline(transaction=False) as pipe:
        for session_id in listed:
            pipe.eval(_SET_IF_ALIVE, 1, session_key(session_id), *pairs)
        await pipe.execute()


async def revoke(redis: Redis, session_id: str, person: str) -> None:
    """Delete the record and tell every worker to close the session's sockets."""
    await redis.delete(session_key(session_id))
    await redis.zrem(person_key(person, "sessions"), session_id)
    await redis.spublish(session_channel(session_id), "revoke\n")


# Sending counts as activity (slides the idle expiry); the absolute lifetime is checked too.
# KEYS: session record, send bucket. ARGV: rate, burst, now ms (the clock `created` came
# from), idle s, max s.
# Returns {-1, ''} when the session is gone, else {0 or the milliseconds until a send is
# allowed, the session's display name}.
_SEND_CHECK = (
    ratelimit.TAKE_FROM_BUCKET_LUA
    + """
local created = tonumber(redis.call('HGET', KEYS[1], 'created'))
if not created then return {-1, ''} end
if tonumber(ARGV[3]) / 1000 - created > tonumber(ARGV[5]) then
  redis.call('DEL', KEYS[1])
  return {-1, ''}
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
local wait = take_token(KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]))
return {wait, redis.call('HGET', KEYS[1], 'name') or ''}
"""
)


async def take_send_token(redis: Redis, session: Session) -> int:
    """One message's worth of the session's send rate, for every route that posts.

    -1: the session has ended (close its sockets); 0: send; n > 0: wait n milliseconds.
    """
    return (await check_send(redis, session))[0]


async def check_send(redis: Redis, session: Session) -> tuple[int, Session]:
    """`take_send_token`, and the session with its display name as it is now, in the same
    round trip: a socket holds its handshake's Session, and a rename (in any tab) changes the
    record, not that object."""
    config = current_app.config
    wait, name = await redis.eval(
        _SEND_CHECK,
        2,
        session_key(session.id),
        session_key(session.id, "send-rate"),
        float(config["WS_MESSAGES_PER_SECOND"]),
        float(config["WS_BURST"]),
        int(time.time() * 1000),
        config["SESSION_IDLE_SECONDS"],
        config["SESSION_MAX_SECONDS"],
    )
    if int(wait) < 0 or name == session.name:
        return int(wait), session
    return int(wait), replace(session, name=name)


# Open sockets per session across all workers; entries expire unless their worker refreshes
# them (chat/presence.py heartbeat), so a crashed worker does not use up the allowance.
# Handshakes are counted first: a client that reconnects in a loop is refused before upgrade.
# KEYS: session record, socket set, handshake counter.
# ARGV: now, socket id, expiry, cap, handshakes per minute.
# Returns 'ok', 'gone' (no session), 'busy' (too many handshakes) or 'full' (too many sockets).
_CLAIM_SOCKET = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
if tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[5]) then return 'busy' end
if redis.call('INCR', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], 60) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 'full' end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('EXPIRE', KEYS[2], 120)
return 'ok'
"""


async def claim_socket(redis: Redis, session_id: str, socket_id: str, ttl: int) -> str:
    config = current_app.config
    now = time.time()
    return str(
        await redis.eval(
            _CLAIM_SOCKET,
            3,
            session_key(session_id),
            session_key(session_id, "session-sockets"),
            session_key(session_id, "handshakes"),
            now,
            socket_id,
            now + ttl,
            config["WS_MAX_SOCKETS_PER_SESSION"],
            config["WS_HANDSHAKES_PER_MINUTE"],
        )
    )


async def release_socket(redis: Redis, session_id: str, socket_id: str) -> None:
    await redis.zrem(session_key(session_id, "session-sockets"), socket_id)


class ChatUser(AuthUser):
    """quart-auth user whose auth id is a session id checked against Redis on each request."""

    def __init__(self, auth_id: str | None, action: Action = Action.PASS) -> None:
        super().__init__(auth_id, action)
        self._session: Session | None = None
        self._loaded = False

    async def session(self) -> Session | None:
        if not self._loaded:
            if self.auth_id:
                config = current_app.config
                self._session = await load(
                    store.redis(),
                    self.auth_id,
                    config["SESSION_IDLE_SECONDS"],
                    config["SESSION_MAX_SECONDS"],
                )
            # Only once it worked: a Redis error raises again for the page, which says so.
            self._loaded = True
        return self._session

    @property
    async def is_authenticated(self) -> bool:
        return await self.session() is not None


async def current_session() -> Session | None:
    """The signed-in person's live session in this request or websocket, if any."""
    user = current_user._get_current_object()  # type: ignore[attr-defined]
    return await user.session() if isinstance(user, ChatUser) else None
