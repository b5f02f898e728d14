"""Where a person is signed in: their live sessions as they see them on /settings, and ending
the ones they do not want.

A page never carries a session id (it is the credential the cookie stands for): each session
is named by a handle, a keyed digest of its id, and ending one looks the handle up among the
person's own sessions only, so a forged or foreign handle finds nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis

from chat import sessions, store, user_agents
from chat.people import person_key

HANDLE = re.compile(r"^[0-9a-f]{24}$")


@dataclass(frozen=True)
class SignedIn:
    handle: str
    browser: str  # "" when the User-Agent names none we know
    system: str
    ip: str
    signed_in_at: datetime
    active_at: datetime
    this_browser: bool


def handle(session_id: str) -> str:
    return hmac.new(store.secret(), f"session:{session_id}".encode(), hashlib.sha256).hexdigest()[
        :24
    ]


_FIELDS = ["ua", "ip", "created", "seen"]


async def _live(redis: Redis, person: str, max_seconds: int) -> dict[str, list[str | None]]:
    """The person's sessions that still exist (id -> ua, ip, created, seen), newest first;
    ended ones leave the index. One round trip for the records."""
    listed: list[str] = await redis.zrevrange(person_key(person, "sessions"), 0, -1)
    async with redis.pipeline(transaction=False) as pipe:
        for session_id in listed:
            pipe.hmget(sessions.session_key(session_id), _FIELDS)
        records = await pipe.execute()
    now = time.time()
    live = {
        session_id: record
        for session_id, record in zip(listed, records, strict=True)
        if record[2] is not None and now - float(record[2]) <= max_seconds
    }
    gone = [session_id for session_id in listed if session_id not in live]
    if gone:
        await redis.zrem(person_key(person, "sessions"), *gone)
    return live


async def listed(redis: Redis, person: str, current_id: str, max_seconds: int) -> list[SignedIn]:
    """This browser first, then the others, most recently active first."""
    found = []
    for session_id, (agent, ip, created, seen) in (await _live(redis, person, max_seconds)).items():
        browser, system = await user_agents.describe(agent or "")
        found.append(
            SignedIn(
                handle=handle(session_id),
                browser=browser,
                system=system,
                ip=ip or "",
                signed_in_at=datetime.fromtimestamp(float(created or 0), UTC),
                active_at=datetime.fromtimestamp(float(seen or created or 0), UTC),
                this_browser=session_id == current_id,
            )
        )
    found.sort(key=lambda s: (not s.this_browser, -s.active_at.timestamp()))
    return found


async def end(redis: Redis, person: str, wanted: str, current_id: str, max_seconds: int) -> bool:
    """End the person's session with this handle (not the current one: that is "Sign out").
    False when none of theirs has it."""
    if not HANDLE.fullmatch(wanted):
        return False
    for session_id in await _live(redis, person, max_seconds):
        if session_id != current_id and hmac.compare_digest(handle(session_id), wanted):
            await sessions.revoke(redis, session_id, person)
            return True
    return False


async def end_others(redis: Redis, person: str, current_id: str, max_seconds: int) -> int:
    """End every session of the person but this one; how many ended."""
    others = [s for s in await _live(redis, person, max_seconds) if s != current_id]
    for session_id in others:
        await sessions.revoke(redis, session_id, person)
    return len(others)
