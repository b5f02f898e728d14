"""One-time sign-in codes: CSPRNG digits, stored only as an HMAC, short-lived, single use."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import Enum

from redis.asyncio import Redis

CODE_DIGITS = 6


class Verdict(Enum):
    OK = "ok"
    WRONG = "wrong"
    EXPIRED = "expired"  # no live code: never sent, timed out, used, or killed by too many tries
    LOCKED = "locked"  # too many consecutive failures for this email


@dataclass(frozen=True)
class CodePolicy:
    ttl_seconds: int
    max_attempts: int
    failures_before_lock: int
    lock_seconds: int


# Atomic check-and-consume, so two concurrent verifies of one code cannot both succeed.
# KEYS: code hash, failure counter. ARGV: candidate mac, max attempts, lock threshold, lock ttl.
_VERIFY = """
local failures = tonumber(redis.call('GET', KEYS[2]) or '0')
if failures >= tonumber(ARGV[3]) then return 'locked' end
local mac = redis.call('HGET', KEYS[1], 'mac')
if not mac then return 'expired' end
if mac == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 'ok'
end
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if attempts >= tonumber(ARGV[2]) then redis.call('DEL', KEYS[1]) end
return 'wrong'
"""


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def email_key(secret: bytes, email: str) -> str:
    """A keyed digest of the address, so Redis keys do not spell out who signs in."""
    return hmac.new(secret, b"email:" + email.encode(), hashlib.sha256).hexdigest()[:32]


def code_mac(secret: bytes, email: str, code: str) -> str:
    # Binding the mac to the email means a code only works for the address it was sent to.
    return hmac.new(secret, f"code:{email}:{code}".encode(), hashlib.sha256).hexdigest()


async def store(redis: Redis, secret: bytes, email: str, code: str, policy: CodePolicy) -> None:
    """Save a code as its HMAC; this replaces (voids) any earlier code for the email."""
    key = f"code:{email_key(secret, email)}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        pipe.hset(key, mapping={"mac": code_mac(secret, email, code), "attempts": 0})
        pipe.expire(key, policy.ttl_seconds)
        await pipe.execute()


async def verify(redis: Redis, secret: bytes, email: str, code: str, policy: CodePolicy) -> Verdict:
    digest = email_key(secret, email)
    candidate = code.strip()
    if not (len(candidate) == CODE_DIGITS and candidate.isascii() and candidate.isdigit()):
        candidate = "not-a-code"  # still counts as a wrong try
    result = await redis.eval(
        _VERIFY,
        2,
        f"code:{digest}",
        f"signin-failures:{digest}",
        code_mac(secret, email, candidate),
        policy.max_attempts,
        policy.failures_before_lock,
        policy.lock_seconds,
    )
    return Verdict(result)
