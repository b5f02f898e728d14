"""Rate limits kept in Redis, so every worker and every route that does one action shares one.

Two shapes: a fixed window ("at most N per hour"), and a token bucket ("R a second, bursts of
B") as a Lua function for scripts that check something else in the same round trip. Both
answer 0 when allowed, else how long to wait. A fixed window can also be looked at first and
counted later, when several limits must all allow an action before any of them counts it.
"""

from __future__ import annotations

from redis.asyncio import Redis

# KEYS: counter. ARGV: cap, window seconds. Returns 0 (counted) or seconds until there is room.
_FIXED_WINDOW = """
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[1]) then
  local ttl = redis.call('TTL', KEYS[1])
  if ttl > 0 then return ttl end
  return tonumber(ARGV[2])
end
if redis.call('INCR', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2])) end
return 0
"""

# A Lua function other scripts include, so a check and a token can share one round trip.
# take_token(bucket hash key, rate per second, burst) -> 0, or milliseconds to wait.
TAKE_FROM_BUCKET_LUA = """
local function take_token(key, rate, burst)
  local clock = redis.call('TIME')  -- the server's clock: app hosts may drift apart
  local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens, at = tonumber(state[1]) or burst, tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
  local wait = 0
  if tokens < 1 then
    wait = math.ceil((1 - tokens) * 1000 / rate)
  else
    tokens = tokens - 1
  end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'at', now)
  redis.call('PEXPIRE', key, math.ceil(burst * 1000 / rate) + 1000)
  return wait
end
"""


# KEYS: counter. ARGV: cap, window seconds. Returns 0 or seconds until there is room.
_PEEK = """
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then return 0 end
local ttl = redis.call('TTL', KEYS[1])
if ttl > 0 then return ttl end
return tonumber(ARGV[2])
"""

# KEYS: counter. ARGV: window seconds.
_COUNT = """
if redis.call('INCR', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1])) end
return 0
"""


async def peek(redis: Redis, key: str, cap: int, window_seconds: int) -> int:
    """0 if the window has room for one more, else seconds until it has; counts nothing."""
    return int(await redis.eval(_PEEK, 1, key, cap, window_seconds))


async def count(redis: Redis, key: str, window_seconds: int) -> None:
    """Count one in the window (after every limit involved has allowed the action)."""
    await redis.eval(_COUNT, 1, key, window_seconds)


async def fixed_window(redis: Redis, key: str, cap: int, window_seconds: int) -> int:
    """Count one if under `cap` in the current window; 0 if allowed, else seconds to wait."""
    return int(await redis.eval(_FIXED_WINDOW, 1, key, cap, window_seconds))
