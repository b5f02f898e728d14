"""A room's rules set by admins: slow mode and "only admins can post".

The rules live in `{r:<slug>}:rules` (hash: `slow` seconds, `admins_only` "1"/"0"); each
person's slow-mode slot in `{r:<slug>}:slow:<person>`. Both share the room's hash tag, so the
check and the slot are one single-slot script. Every path that accepts a person's message asks
`refusal()` (the socket and the no-JavaScript form); bots, made by admins, are exempt.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from chat.problems import Problem, problem

SLOW_MODES = (0, 5, 30, 120)  # seconds; 0 is off


@dataclass(frozen=True)
class Rules:
    slow: int = 0  # seconds between two messages of one person; 0 = off
    admins_only: bool = False


def rules_key(slug: str) -> str:
    return f"{{r:{slug}}}:rules"


def slot_key(slug: str, person: str) -> str:
    return f"{{r:{slug}}}:slow:{person}"


async def rules(redis: Redis, slug: str) -> Rules:
    """The room's rules (the defaults when none were ever set)."""
    slow, admins_only = await redis.hmget(rules_key(slug), ["slow", "admins_only"])
    seconds = int(slow) if slow and slow.isdigit() else 0
    return Rules(seconds if seconds in SLOW_MODES else 0, admins_only == "1")


async def save(redis: Redis, slug: str, new: Rules) -> None:
    """Store the rules; `new.slow` must be one of SLOW_MODES (callers validate input)."""
    if new.slow not in SLOW_MODES:
        raise ValueError(f"slow mode must be one of {SLOW_MODES}")
    await redis.hset(
        rules_key(slug), mapping={"slow": new.slow, "admins_only": int(new.admins_only)}
    )


# KEYS: rules, the person's slow-mode slot. ARGV: admin (1/0).
# Returns {'ok', 0}, {'admins_only', 0} or {'slow', seconds left}.
_CHECK = """
local rules = redis.call('HMGET', KEYS[1], 'slow', 'admins_only')
if rules[2] == '1' and ARGV[1] ~= '1' then return {'admins_only', 0} end
local slow = tonumber(rules[1] or '0') or 0
if slow <= 0 then return {'ok', 0} end
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', slow) then return {'ok', 0} end
local left = redis.call('TTL', KEYS[2])
if left < 1 then left = 1 end
return {'slow', left}
"""


async def change_refusal(redis: Redis, slug: str, admin: bool) -> Problem | None:
    """Edits and reactions are posting too: a read-only room refuses them to non-admins
    (slow mode is for messages only)."""
    if admin or not (await rules(redis, slug)).admins_only:
        return None
    return problem("room_admins_only")


async def refusal(redis: Redis, slug: str, person: str, admin: bool) -> Problem | None:
    """None when `person` may post in the room now (and then their slow-mode slot is taken);
    else the problem: "room_admins_only", or "slow_mode" with `seconds` left.

    Read-only applies to non-admins; slow mode to everyone who posts as a person, admins
    included (the spec says "each person"). Call it last, after every other check, so a
    message refused for another reason does not use up the slot.
    """
    kind, seconds = await redis.eval(
        _CHECK, 2, rules_key(slug), slot_key(slug, person), "1" if admin else "0"
    )
    if kind == "admins_only":
        return problem("room_admins_only")
    if kind == "slow":
        return problem("slow_mode", seconds=int(seconds))
    return None
