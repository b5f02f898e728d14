"""Who is an admin (the addresses in CHAT_ADMIN_EMAILS, checked on the server for every
action), and the admin log: who did what, when, newest first, shown on /admin.

The log is a capped Redis stream (`admin:log`, about LOG_KEEP entries); each entry also goes
to the server log (`chat.admin`), for operators who keep logs longer than that.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from quart import current_app
from redis.asyncio import Redis

LOG_KEY = "admin:log"
LOG_KEEP = 1000
LOG_SHOWN = 100

log = logging.getLogger("chat.admin")


def is_admin(email: str) -> bool:
    admins: frozenset[str] = current_app.config["ADMIN_EMAILS"]
    return email in admins


@dataclass(frozen=True)
class Action:
    """One line of the admin log: `what` is a kind the /admin page words (ban, unban, rules,
    bot_created, bot_revoked, ...), `target` what it was done to, `details` the rest."""

    id: str
    at: datetime
    who: str
    what: str
    target: str
    details: dict[str, str] = field(default_factory=dict)


async def record(redis: Redis, who: str, what: str, target: str, **details: str) -> None:
    """Append one admin action to the log (and to the server log)."""
    fields = {"who": who, "what": what, "target": target}
    fields.update({f"d:{key}": value for key, value in details.items()})
    await redis.xadd(LOG_KEY, fields, maxlen=LOG_KEEP, approximate=True)
    log.info("admin %s: %s %s %s", who, what, target, details or "")


async def recent(redis: Redis, count: int = LOG_SHOWN) -> list[Action]:
    """The latest `count` admin actions, newest first."""
    entries = await redis.xrevrange(LOG_KEY, count=count)
    actions = []
    for entry_id, fields in entries:
        millis = int(str(entry_id).partition("-")[0])
        actions.append(
            Action(
                id=entry_id,
                at=datetime.fromtimestamp(millis / 1000, UTC),
                who=fields.get("who", ""),
                what=fields.get("what", ""),
                target=fields.get("target", ""),
                details={k[2:]: v for k, v in fields.items() if k.startswith("d:")},
            )
        )
    return actions
