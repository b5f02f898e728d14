"""Limits on asking for and checking sign-in codes, per inbox, client network and site.

Sending: one code per (inbox, network) per resend window; per hour at most
`per_inbox_network` from one network and `per_inbox` in all to one inbox, of which networks the
inbox never signed in from ("strangers") may use only `per_inbox - per_inbox_network`, so its
owner's own networks always have room; strangers' networks get `per_network` codes an hour
(their IPv6 /48 eight times that), and the whole site `per_site`. Checking: strangers'
networks get `per_network_per_hour` checks (any check, so a flood costs them, not the site);
wrong codes from strangers count towards a site-wide ceiling a minute, and wrong codes for
addresses that never signed in towards a site-wide budget an hour, which bounds guessing
across made-up addresses. Every limit is looked at before any of them counts.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from redis.asyncio import Redis

from chat import ratelimit
from chat.clients import client_networks, inbox_key, keyed_digest
from chat.codes import Requester, email_key

log = logging.getLogger("chat.auth")

# An inbox asked for from this many stranger networks within an hour is being targeted.
TARGETED_NETWORKS = 5
# An IPv6 /48 holds 65,536 /64s: it gets this many times one network's allowance.
WIDE_FACTOR = 8
ATTEMPT_TOKEN_BYTES = 16


@dataclass(frozen=True)
class SendPolicy:
    resend_seconds: int
    per_inbox: int
    per_inbox_network: int
    per_network: int
    per_site: int


@dataclass(frozen=True)
class CheckPolicy:
    per_network_per_hour: int
    failures_per_minute: int
    new_address_failures_per_hour: int


# KEYS: resend lock, inbox total, inbox strangers, inbox from this network, stranger networks.
# ARGV: resend seconds, inbox cap, per-network cap, known (1/0), network.
# Returns {0 (counted) or seconds to wait, stranger networks this hour when this one is new}.
_ACQUIRE_SEND = """
local total, per_network = tonumber(ARGV[2]), tonumber(ARGV[3])
local known = ARGV[4] == '1'
local networks = 0
if not known and redis.call('SADD', KEYS[5], ARGV[5]) == 1 then
  networks = redis.call('SCARD', KEYS[5])
  if networks == 1 then redis.call('EXPIRE', KEYS[5], 3600) end
end
local wait = redis.call('TTL', KEYS[1])
if wait > 0 then return {wait, networks} end
local caps = {{KEYS[4], per_network}, {KEYS[2], total}}
if not known then table.insert(caps, {KEYS[3], total - per_network}) end
for _, cap in ipairs(caps) do
  if tonumber(redis.call('GET', cap[1]) or '0') >= cap[2] then
    local ttl = redis.call('TTL', cap[1])
    if ttl <= 0 then ttl = 3600 end
    return {ttl, networks}
  end
end
redis.call('SET', KEYS[1], '1', 'EX', tonumber(ARGV[1]))
for _, cap in ipairs(caps) do
  if redis.call('INCR', cap[1]) == 1 then redis.call('EXPIRE', cap[1], 3600) end
end
return {0, networks}
"""


def new_attempt_token() -> str:
    """What the sign-in cookie holds: the browser's claim on the code it asked for."""
    return secrets.token_urlsafe(ATTEMPT_TOKEN_BYTES)


def requester(secret: bytes, email: str, remote_addr: str | None, token: str) -> Requester:
    network, wide = client_networks(remote_addr)
    return Requester(
        identity=email_key(secret, email),
        inbox=inbox_key(secret, email),
        network=keyed_digest(secret, "network", network, 16),
        wide_network=keyed_digest(secret, "network", wide, 16) if wide else None,
        attempt=keyed_digest(secret, "attempt", token, 24) if token else "",
    )


def _network_limits(who: Requester, name: str, cap: int) -> list[tuple[str, int]]:
    limits = [(f"{{n:{who.network}}}:{name}", cap)]
    if who.wide_network:
        limits.append((f"{{n:{who.wide_network}}}:{name}", cap * WIDE_FACTOR))
    return limits


async def _first_wait(redis: Redis, limits: list[tuple[str, int]], window: int) -> int:
    for key, cap in limits:
        wait = await ratelimit.peek(redis, key, cap, window)
        if wait:
            return wait
    return 0


async def acquire_send(redis: Redis, who: Requester, known: bool, policy: SendPolicy) -> int:
    """Count one code mailed to `who`; 0 if allowed now, otherwise the seconds until a try."""
    strangers = [] if known else _network_limits(who, "sends", policy.per_network)
    if not known:
        strangers.append(("signin-sends", policy.per_site))
    wait = await _first_wait(redis, strangers, 3600)
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
    if not wait:
        for key, _ in strangers:
            await ratelimit.count(redis, key, 3600)
    return int(wait)


async def release_resend(redis: Redis, who: Requester) -> None:
    """After a failed send the person may try again at once."""
    await redis.delete(who.key(f"resend:{who.network}"))


async def acquire_check(
    redis: Redis, who: Requester, known: bool, new_address: bool, policy: CheckPolicy
) -> int:
    """May a stranger's network check a code now? 0 if so, else seconds to wait.

    Every check from a stranger's network counts towards its hourly allowance; the site-wide
    limits are only looked at here and count wrong codes (`record_failure`).
    """
    if known:
        return 0
    for key, cap in _network_limits(who, "checks", policy.per_network_per_hour):
        wait = await ratelimit.fixed_window(redis, key, cap, 3600)
        if wait:
            return wait
    site = [("signin-failures", policy.failures_per_minute)]
    wait = await _first_wait(redis, site, 60)
    if wait or not new_address:
        return wait
    return await ratelimit.peek(
        redis, "signin-failures-new", policy.new_address_failures_per_hour, 3600
    )


async def record_failure(redis: Redis, known: bool, new_address: bool) -> None:
    """A wrong code from a stranger's network: it counts towards the site-wide limits."""
    if known:
        return
    await ratelimit.count(redis, "signin-failures", 60)
    if new_address:
        await ratelimit.count(redis, "signin-failures-new", 3600)
