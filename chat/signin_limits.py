"""Limits on asking for and checking sign-in codes, per inbox, client network and site.

Sending: one code per (inbox, network) per resend window; per hour at most
`per_inbox_network` from one network and `per_inbox` in all to one inbox, of which networks the
inbox never signed in from may use only `per_inbox - per_inbox_network`, so its owner's own
networks always have room; and at most `per_network` codes an hour from one network to
addresses it is a stranger to. Checking: strangers' networks get `checks_per_network` an hour,
and the whole site `checks_per_minute`. Networks an address signed in from skip the strangers'
limits (chat/codes.py keeps that list).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.asyncio import Redis

from chat import ratelimit
from chat.clients import canonical_inbox, client_network, keyed_digest
from chat.codes import Requester, email_key

log = logging.getLogger("chat.auth")

# An inbox asked for from this many stranger networks within an hour is being targeted.
TARGETED_NETWORKS = 5


@dataclass(frozen=True)
class SendPolicy:
    resend_seconds: int
    per_inbox: int
    per_inbox_network: int
    per_network: int


@dataclass(frozen=True)
class CheckPolicy:
    per_network_per_hour: int
    per_minute: int


# KEYS: resend lock, inbox total, inbox strangers, inbox from this network, stranger networks.
# ARGV: resend seconds, inbox cap, per-network cap, known (1/0), network.
# Returns {0, stranger networks so far (0 if not new)} when counted, else {seconds to wait, 0}.
_ACQUIRE_SEND = """
local wait = redis.call('TTL', KEYS[1])
if wait > 0 then return {wait, 0} end
local function retry_after(key)
  local ttl = redis.call('TTL', key)
  if ttl > 0 then return ttl end
  return 3600
end
local total, per_network = tonumber(ARGV[2]), tonumber(ARGV[3])
local known = ARGV[4] == '1'
local caps = {{KEYS[4], per_network}, {KEYS[2], total}}
if not known then table.insert(caps, {KEYS[3], total - per_network}) end
for _, cap in ipairs(caps) do
  if tonumber(redis.call('GET', cap[1]) or '0') >= cap[2] then return {retry_after(cap[1]), 0} end
end
redis.call('SET', KEYS[1], '1', 'EX', tonumber(ARGV[1]))
for _, cap in ipairs(caps) do
  if redis.call('INCR', cap[1]) == 1 then redis.call('EXPIRE', cap[1], 3600) end
end
local networks = 0
if not known and redis.call('SADD', KEYS[5], ARGV[5]) == 1 then
  networks = redis.call('SCARD', KEYS[5])
  if networks == 1 then redis.call('EXPIRE', KEYS[5], 3600) end
end
return {0, networks}
"""


def requester(secret: bytes, email: str, remote_addr: str | None) -> Requester:
    return Requester(
        identity=email_key(secret, email),
        inbox=keyed_digest(secret, "inbox", canonical_inbox(email)),
        network=keyed_digest(secret, "network", client_network(remote_addr), 16),
    )


def network_key(who: Requester, name: str) -> str:
    return f"{{n:{who.network}}}:{name}"


async def acquire_send(redis: Redis, who: Requester, known: bool, policy: SendPolicy) -> int:
    """Count one code mailed to `who`; 0 if allowed now, otherwise the seconds until a try."""
    if not known:
        wait = await ratelimit.fixed_window(
            redis, network_key(who, "sends"), policy.per_network, 3600
        )
        if wait:
            return wait
    wait, networks = await redis.eval(
        _ACQUIRE_SEND,
        5,
        who.key(f"resend:{who.network}"),
        who.key("sends"),
        who.key("sends-strangers"),
        who.key(f"sends:{who.network}"),
        who.key("stranger-networks"),
        policy.resend_seconds,
        policy.per_inbox,
        policy.per_inbox_network,
        int(known),
        who.network,
    )
    if networks == TARGETED_NETWORKS:
        log.warning(
            "sign-in codes for one inbox (%s…) asked for from %d networks within an hour",
            who.inbox[:12],
            networks,
        )
    return int(wait)


async def release_resend(redis: Redis, who: Requester) -> None:
    """After a failed send the person may try again at once."""
    await redis.delete(who.key(f"resend:{who.network}"))


async def acquire_check(redis: Redis, who: Requester, known: bool, policy: CheckPolicy) -> int:
    """Count one code check by a stranger network; 0 if allowed, else seconds to wait."""
    if known:
        return 0
    wait = await ratelimit.fixed_window(
        redis, network_key(who, "checks"), policy.per_network_per_hour, 3600
    )
    if wait:
        return wait
    return await ratelimit.fixed_window(redis, "signin-checks", policy.per_minute, 60)
