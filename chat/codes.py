"""One-time sign-in codes: CSPRNG digits, stored only as an HMAC, short-lived, single use.

A code belongs to the address it was mailed to AND the browser that asked for it (a random
sign-in cookie): guesses from anywhere else cannot touch it, so a stranger can neither guess a
code someone else asked for nor kill it with wrong tries. Wrong codes count per (inbox, client
network) and, for networks the inbox never signed in from, per inbox across networks; each
count locks its own scope when full. The arithmetic behind the numbers is in SECURITY.md.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from enum import Enum

from redis.asyncio import Redis

# 10**8 codes: with the default limits a targeted address sees under 0.001 expected
# successful guesses a year (SECURITY.md); six digits would need far harsher locks.
CODE_DIGITS = 8
KNOWN_NETWORK_SECONDS = 90 * 86400


class Verdict(Enum):
    OK = "ok"
    WRONG = "wrong"
    EXPIRED = "expired"  # no live code for this browser: never sent, timed out, used, killed
    LOCKED = "locked"  # too many wrong codes for this address (from this network, or strangers')


@dataclass(frozen=True)
class CodePolicy:
    ttl_seconds: int
    max_attempts: int
    failures_per_network: int
    network_lock_seconds: int
    failures_from_strangers: int
    strangers_lock_seconds: int


@dataclass(frozen=True)
class Requester:
    """Who asks, as keyed digests: the exact address, the inbox it reaches, the client network
    (and, for IPv6, the wider block around it), and the browser's sign-in attempt."""

    identity: str
    inbox: str
    network: str
    wide_network: str | None
    attempt: str

    def key(self, name: str) -> str:
        # Every key of one inbox shares a hash tag: its scripts stay in one cluster slot.
        return f"{{a:{self.inbox}}}:{name}"

    @property
    def code_key(self) -> str:
        return self.key(f"code:{self.identity}:{self.attempt}")


# Atomic check-and-consume, so two concurrent verifies of one code cannot both succeed.
# KEYS: code, failures of this network, failures of unknown networks, known networks.
# ARGV: candidate mac, max attempts, network lock at, network window, strangers lock at,
# strangers window, now, known-network seconds.
_VERIFY = """
local known = redis.call('ZSCORE', KEYS[4], ARGV[9])
known = known and tonumber(known) > tonumber(ARGV[7]) - tonumber(ARGV[8])
if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[3]) then return 'locked' end
if not known and tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[5]) then
  return 'locked'
end
local mac = redis.call('HGET', KEYS[1], 'mac')
if not mac then return 'expired' end
if mac == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('ZADD', KEYS[4], ARGV[7], ARGV[9])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', tonumber(ARGV[7]) - tonumber(ARGV[8]))
  redis.call('EXPIRE', KEYS[4], tonumber(ARGV[8]))
  return 'ok'
end
-- Fixed windows from the first failure: a success does not reset them, so guesses cannot be
-- interleaved with the owner's own sign-ins to get fresh budgets.
if redis.call('INCR', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4])) end
if not known and redis.call('INCR', KEYS[3]) == 1 then
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[6]))
end
if redis.call('HINCRBY', KEYS[1], 'attempts', 1) >= tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
end
return 'wrong'
"""


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def normalise_code(raw: str) -> str | None:
    """The code as typed, with the spaces and dashes people add; None unless 8 ASCII digits."""
    candidate = "".join(raw.split()).replace("-", "")
    if len(candidate) == CODE_DIGITS and candidate.isascii() and candidate.isdigit():
        return candidate
    return None


def email_key(secret: bytes, email: str) -> str:
    """A keyed digest of the address, so Redis keys do not spell out who signs in."""
    return hmac.new(secret, b"email:" + email.encode(), hashlib.sha256).hexdigest()[:32]


def code_mac(secret: bytes, email: str, code: str) -> str:
    # Binding the mac to the email means a code only works for the address it was sent to.
    return hmac.new(secret, f"code:{email}:{code}".encode(), hashlib.sha256).hexdigest()


async def store(
    redis: Redis, secret: bytes, email: str, who: Requester, code: str, policy: CodePolicy
) -> None:
    """Save a code as its HMAC; this replaces (voids) the network's earlier code for the email."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(who.code_key)
        pipe.hset(who.code_key, mapping={"mac": code_mac(secret, email, code), "attempts": 0})
        pipe.expire(who.code_key, policy.ttl_seconds)
        await pipe.execute()


async def verify(
    redis: Redis, secret: bytes, email: str, who: Requester, code: str, policy: CodePolicy
) -> Verdict:
    candidate = normalise_code(code) or "not-a-code"  # still counts as a wrong try
    result = await redis.eval(
        _VERIFY,
        4,
        who.code_key,
        who.key(f"fails:{who.network}"),
        who.key("fails-strangers"),
        who.key("known-networks"),
        code_mac(secret, email, candidate),
        policy.max_attempts,
        policy.failures_per_network,
        policy.network_lock_seconds,
        policy.failures_from_strangers,
        policy.strangers_lock_seconds,
        int(time.time()),
        KNOWN_NETWORK_SECONDS,
        who.network,
    )
    return Verdict(result)


async def is_known_network(redis: Redis, who: Requester) -> bool:
    """Has this inbox signed in from this network lately? Its people then skip the limits
    meant for strangers (the point: a stranger elsewhere can never lock them out)."""
    seen = await redis.zscore(who.key("known-networks"), who.network)
    return seen is not None and float(seen) > time.time() - KNOWN_NETWORK_SECONDS
