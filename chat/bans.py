"""Bans: an admin bars an address from the chat. Banning ends every session of the person at
once (their sockets close, chat/sessions.py `revoke`) and sign-in refuses the address, both
when sending a code and when checking one (blueprints/auth.py).

Bans are kept by the normalised address in one hash (`bans`: address -> "<unix time> <admin>"),
so the /admin page can list them. Admins cannot be banned (themselves included): an admin is
named by CHAT_ADMIN_EMAILS, which only the operator can change, and a ban they could not
enforce would only mislead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis

from chat import people, sessions
from chat.people import person_key
from chat.problems import Problem, problem

BANS_KEY = "bans"


@dataclass(frozen=True)
class Ban:
    email: str
    at: float
    by: str


async def is_banned(redis: Redis, email: str) -> bool:
    return bool(await redis.hexists(BANS_KEY, email))


async def ban(redis: Redis, email: str, by: str, admins: frozenset[str]) -> Problem | None:
    """Ban a normalised address and end all its sessions; None when done, else why not."""
    if email in admins:
        return problem("ban_an_admin")
    person = await people.find(redis, email)
    if person is None:
        return problem("ban_no_such_person")
    await redis.hset(BANS_KEY, email, f"{int(time.time())} {by}")
    await end_sessions(redis, person)
    return None


async def end_sessions(redis: Redis, person: str) -> None:
    """End every session of the person; each one's sockets close at once, on every worker."""
    for session_id in await redis.zrange(person_key(person, "sessions"), 0, -1):
        await sessions.revoke(redis, session_id, person)


async def unban(redis: Redis, email: str) -> bool:
    """Lift the ban; False when the address was not banned."""
    return bool(await redis.hdel(BANS_KEY, email))


async def listed(redis: Redis) -> list[Ban]:
    """Every ban, newest first."""
    found: dict[str, str] = await redis.hgetall(BANS_KEY)
    bans = []
    for email, value in found.items():
        at, _, by = value.partition(" ")
        bans.append(Ban(email, float(at) if at.isdigit() else 0.0, by))
    return sorted(bans, key=lambda b: (-b.at, b.email))
