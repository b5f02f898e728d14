"""Limits on sending codes: one per email per resend window, hourly caps per email and per IP."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis


@dataclass(frozen=True)
class SendPolicy:
    resend_seconds: int
    per_email_per_hour: int
    per_ip_per_hour: int


# Fixed windows, checked and counted atomically. Returns 0 when allowed, else seconds to wait.
# KEYS: resend lock, email hour counter, ip hour counter. ARGV: resend s, email cap, ip cap.
_ACQUIRE = """
local wait = redis.call('TTL', KEYS[1])
if wait > 0 then return wait end
for i, cap in ipairs({ARGV[2], ARGV[3]}) do
  local used = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
  if used >= tonumber(cap) then
    local ttl = redis.call('TTL', KEYS[i + 1])
    if ttl > 0 then return ttl end
    return 3600
  end
end
redis.call('SET', KEYS[1], '1', 'EX', tonumber(ARGV[1]))
for i = 2, 3 do
  if redis.call('INCR', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], 3600) end
end
return 0
"""


async def acquire_send(redis: Redis, email_digest: str, client_ip: str, policy: SendPolicy) -> int:
    """Count one code send; 0 if allowed now, otherwise the seconds until the next try."""
    wait = await redis.eval(
        _ACQUIRE,
        3,
        f"code-resend:{email_digest}",
        f"code-sends-email:{email_digest}",
        f"code-sends-ip:{client_ip}",
        policy.resend_seconds,
        policy.per_email_per_hour,
        policy.per_ip_per_hour,
    )
    return int(wait)


async def release_resend(redis: Redis, email_digest: str) -> None:
    """After a failed send the person may try again at once."""
    await redis.delete(f"code-resend:{email_digest}")
