"""Who is in a room: one entry per open socket, with an expiry each worker keeps refreshing.

Two sorted sets per room: `lex` (score 0, member "user\\x1fsocket") finds a user's sockets by
prefix; `exp` (score = expiry time) lets any worker drop the sockets of a crashed
worker. A set, `people`, holds each user with at least one entry: the Online list reads it, so
a new socket costs O(people in the room), not O(sockets) (a person may have many tabs).

A closed socket's entry lingers for LINGER_SECONDS before it is swept: a person who comes
back within that time (a reload, a tab brought back to the front, a reconnect loop) never was
away, so the room sees neither "left" nor "joined".
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Protocol

from quart import Quart
from redis.asyncio import Redis

from chat import people, sessions, store, tasks
from chat.sessions import session_key

log = logging.getLogger("chat.presence")

TTL_SECONDS = 30
HEARTBEAT_SECONDS = 10
LINGER_SECONDS = 5
SEP = "\x1f"
ONLINE_SHOWN = 100  # names in a room's Online list; the others are counted ("and 42 more")

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
    redis.call('SREM', KEYS[3], user)
  end
end
return left
"""

# KEYS: lex, exp, people. ARGV: user, socket, expires. Returns 1 if this is the user's first
# socket. The user is added to `people` at every join, so a room whose set predates it (an
# upgrade) fills as its sockets reconnect.
_JOIN = """
local prefix = ARGV[1] .. '\\31'
local had = #redis.call('ZRANGEBYLEX', KEYS[1], '[' .. prefix, '[' .. prefix .. '\\255', 'LIMIT', 0, 1)
redis.call('ZADD', KEYS[1], 0, prefix .. ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], prefix .. ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
if had == 0 then return 1 else return 0 end
"""


def _keys(slug: str) -> tuple[str, str, str]:
    # One room's keys share a cluster slot ({r:<room>}), so its scripts touch one slot.
    prefix = f"presence:{{r:{slug}}}"
    return f"{prefix}:lex", f"{prefix}:exp", f"{prefix}:people"


def user_of(person: str, email: str) -> str:
    """What stands for a person in the room's sets. Only the person id part is read back; the
    address in it is never shown (names come from profiles, current at each render)."""
    return f"{person}:{email}"


def person_of(user: str) -> str:
    return user.partition(":")[0]


async def join(redis: Redis, slug: str, user: str, socket_id: str) -> bool:
    """Add the socket; True if the user was not in the room (not even lingering)."""
    expires = time.time() + TTL_SECONDS
    first = await redis.eval(_JOIN, 3, *_keys(slug), user, socket_id, expires)
    return bool(first)


async def leave(redis: Redis, slug: str, user: str, socket_id: str) -> None:
    """Let the socket's entry linger; a sweep after LINGER_SECONDS says who really left."""
    member = {f"{user}{SEP}{socket_id}": time.time() + LINGER_SECONDS}
    await redis.zadd(_keys(slug)[1], member, xx=True)


async def forget(redis: Redis, slug: str, person: str) -> None:
    """A deleted account leaves the room's presence at once (no lingering, no "left")."""
    lex, exp, people_key = _keys(slug)
    gone = [m for m in await redis.zrange(lex, 0, -1) if person_of(m.split(SEP, 1)[0]) == person]
    gone += [m for m in await redis.zrange(exp, 0, -1) if person_of(m.split(SEP, 1)[0]) == person]
    users = [u for u in await redis.smembers(people_key) if person_of(u) == person]
    async with redis.pipeline(transaction=True) as pipe:  # one room, one slot
        if gone:
            pipe.zrem(lex, *gone)
            pipe.zrem(exp, *gone)
        if users:
            pipe.srem(people_key, *users)
        await pipe.execute()


async def expire(redis: Redis, slug: str) -> list[str]:
    """Drop sockets whose worker stopped refreshing them; the users now gone."""
    return list(await redis.eval(_EXPIRE, 3, *_keys(slug), time.time()))


async def how_many(redis: Redis, slug: str) -> int:
    """How many people have a socket in the room (or lingering), without reading who."""
    return int(await redis.scard(_keys(slug)[2]))


async def online(redis: Redis, slug: str) -> tuple[list[tuple[str, str]], int]:
    """(person, display name) of everyone with a socket in the room (or lingering), by name:
    the first ONLINE_SHOWN of them, and how many they are. Only those go out with every
    arrival and departure, to every socket of the room."""
    users: set[str] = await redis.smembers(_keys(slug)[2])
    persons = sorted({person_of(user) for user in users})
    found = await people.profiles_of(redis, persons)
    listed = sorted(
        ((person, p.name) for person, p in found.items()),
        key=lambda pair: (pair[1].casefold(), pair[0]),
    )
    return listed[:ONLINE_SHOWN], len(listed)


class Member(Protocol):
    """An open socket as presence sees it."""

    user: str
    session_id: str

    async def session_ended(self) -> None:
        """Its session is gone (signed out, expired, too many sessions): close it."""


class LocalSockets:
    """This worker's open sockets: it refreshes their expiry, re-checks their sessions and
    sweeps the entries of sockets that closed (after the linger) or whose worker crashed."""

    def __init__(self, app: Quart) -> None:
        self.app = app
        self.by_room: dict[str, dict[str, Member]] = {}  # slug -> socket id -> member
        self.lobby: dict[str, Member] = {}  # room list pages' sockets: in no room
        self.sweeps: set[asyncio.Task[None]] = set()
        self.touched: dict[str, float] = {}  # session id -> when its activity was last written

    def add(self, slug: str, socket_id: str, member: Member) -> None:
        self.by_room.setdefault(slug, {})[socket_id] = member

    def remove(self, slug: str, socket_id: str) -> None:
        sockets = self.by_room.get(slug, {})
        sockets.pop(socket_id, None)
        if not sockets:
            self.by_room.pop(slug, None)

    def sweep_later(self, slug: str) -> None:
        """Say "left" for whoever is still gone once a closed socket's linger is over."""
        task = asyncio.create_task(self._sweep_after(slug, LINGER_SECONDS + 0.2))
        self.sweeps.add(task)
        task.add_done_callback(self.sweeps.discard)

    async def _sweep_after(self, slug: str, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await sweep(self.app, store.redis(self.app), slug)
        except store.REDIS_DOWN as error:  # the periodic sweep will do it
            log.warning("presence sweep failed (room %s): %s", slug, error)

    async def heartbeat(self, redis: Redis) -> None:
        expires = time.time() + TTL_SECONDS
        async with redis.pipeline(transaction=False) as pipe:
            for slug, sockets in self.by_room.items():
                members = {f"{m.user}{SEP}{sid}": expires for sid, m in sockets.items()}
                if members:
                    pipe.zadd(_keys(slug)[1], members, xx=True)
            # One write per session, not per socket: a person's tabs share their session.
            by_session: dict[str, dict[str, float]] = {}
            for sockets in (*self.by_room.values(), self.lobby):
                for sid, member in sockets.items():
                    by_session.setdefault(member.session_id, {})[sid] = expires
            for session_id, socket_expiries in by_session.items():
                key = session_key(session_id, "session-sockets")
                pipe.zadd(key, socket_expiries, xx=True)
                pipe.expire(key, TTL_SECONDS * 2)
            active = set(by_session)
            # An open tab is activity ("Where you're signed in"), written once a minute.
            now = expires - TTL_SECONDS
            self.touched = {sid: at for sid, at in self.touched.items() if sid in active}
            for session_id in active:
                # A new socket's page has just written it; spread the writes over the minute.
                last = self.touched.setdefault(
                    session_id, now - random.random() * sessions.SEEN_EVERY_SECONDS
                )
                if now - last >= sessions.SEEN_EVERY_SECONDS:
                    sessions.touch(pipe, session_id, now)
                    self.touched[session_id] = now
            await pipe.execute()

    async def close_ended_sessions(self, redis: Redis) -> None:
        """A session can end without a sign-out reaching us (idle expiry, a missed publish)."""
        by_session: dict[str, list[Member]] = {}
        for sockets in (*self.by_room.values(), self.lobby):
            for member in sockets.values():
                by_session.setdefault(member.session_id, []).append(member)
        if not by_session:
            return
        ids = list(by_session)
        max_seconds = int(self.app.config["SESSION_MAX_SECONDS"])
        for session_id, exists in zip(
            ids, await sessions.alive(redis, ids, max_seconds), strict=True
        ):
            if not exists:
                async with self.app.app_context():
                    for member in by_session[session_id]:
                        await member.session_ended()


async def sweep(app: Quart, redis: Redis, slug: str) -> None:
    from chat.live_room import announce_departures  # circular at import time

    gone = await expire(redis, slug)
    if gone:
        await announce_departures(app, slug, gone)


def init_app(app: Quart) -> None:
    local = LocalSockets(app)
    app.extensions["presence"] = local

    @app.while_serving
    async def refresh_presence():  # type: ignore[no-untyped-def]
        task = asyncio.create_task(_heartbeats(app, local))
        yield
        for pending in (task, *local.sweeps):
            pending.cancel()
        for pending in (task, *local.sweeps):
            await tasks.stop(pending)


async def _heartbeats(app: Quart, local: LocalSockets) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        try:
            redis = store.redis(app)
            await local.heartbeat(redis)
            await local.close_ended_sessions(redis)
            for slug in list(local.by_room):
                await sweep(app, redis, slug)
        except store.REDIS_DOWN as error:
            log.warning("presence heartbeat failed: %s", error)
        except Exception:
            log.exception("presence heartbeat failed")


async def open_elsewhere(
    redis: Redis, user: str, slugs: list[str], own_socket: str
) -> dict[str, set[str]]:
    """The user's other live sockets in each of these rooms (not the closed, lingering ones)."""
    candidates = await _entries_of(redis, user, slugs)
    if not candidates:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for slug, member in candidates:
            pipe.zscore(_keys(slug)[1], member)
        expiries = await pipe.execute()
    live_after = time.time() + LINGER_SECONDS + 1  # a closed socket's entry expires sooner
    sockets: dict[str, set[str]] = {}
    for (slug, member), expiry in zip(candidates, expiries, strict=True):
        socket_id = member.rpartition(SEP)[2]
        if expiry is not None and expiry > live_after and socket_id != own_socket:
            sockets.setdefault(slug, set()).add(socket_id)
    return sockets


async def _entries_of(redis: Redis, user: str, slugs: list[str]) -> list[tuple[str, str]]:
    """(room, entry) of each of the user's sockets in these rooms, lingering ones included."""
    if not slugs:
        return []
    prefix = f"{user}{SEP}"
    async with redis.pipeline(transaction=False) as pipe:
        for slug in slugs:
            pipe.zrangebylex(_keys(slug)[0], f"[{prefix}", f"[{prefix}".encode() + b"\xff")
        found = await pipe.execute()
    return [(slug, m) for slug, ms in zip(slugs, found, strict=True) for m in ms]


async def rooms_with(redis: Redis, user: str, slugs: list[str]) -> list[str]:
    """Which of these rooms list the user as online (lingering included)."""
    return sorted({slug for slug, _ in await _entries_of(redis, user, slugs)})
