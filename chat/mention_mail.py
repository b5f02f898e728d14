"""Missed mentions by email: one email listing what a person missed, a while after it was sent.

`schedule` appends the item to `{p:<id>}:missed` (JSON items, newest 50, kept 3 days) and puts
the person in `{mention-mail}:due` (sorted set, person -> due ms). Every worker polls; one
script moves due people to `{mention-mail}:leased` (person -> lease end), so one worker on one
host gets each job, and a crashed worker's lease runs out and the job is due again. The worker
removes the items it handled and re-schedules the rest. Per person also `{p:<id>}:mention-mails`
(the hourly cap), `{p:<id>}:missed-tries` (failed sends), and `mention_mail` ("0": off) in
`{p:<id>}:profile`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from quart import Quart
from redis.asyncio import Redis

from chat import i18n, mailer, membership, ratelimit, store, unread, versions
from chat.i18n import Variant
from chat.people import person_key

log = logging.getLogger("chat.mention_mail")

DUE, LEASED = "{mention-mail}:due", "{mention-mail}:leased"
KEEP_ITEMS, KEEP_SECONDS, BATCH, MAX_TRIES, SHOWN_CHARS = 50, 3 * 86400, 10, 5, 500

# KEYS: due, leased. ARGV: lease ms, batch. Returns {lease end, person...}. The server's clock:
# hosts may drift apart. A person still leased stays due until that worker finishes.
_CLAIM = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
for _, person in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  redis.call('ZREM', KEYS[2], person)
  redis.call('ZADD', KEYS[1], 'LT', now, person)
end
local lease, claimed = now + tonumber(ARGV[1]), {}
for _, person in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 100)) do
  if #claimed < tonumber(ARGV[2]) and not redis.call('ZSCORE', KEYS[2], person) then
    redis.call('ZREM', KEYS[1], person)
    redis.call('ZADD', KEYS[2], lease, person)
    table.insert(claimed, person)
  end
end
return {lease, unpack(claimed)}
"""

# KEYS: due, leased. ARGV: person, lease end, next due or "". Items that came meanwhile put
# the person in `due` themselves, so finishing never removes from `due`.
_FINISH = """
if tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1])) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[2], ARGV[1])
end
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[1], 'LT', ARGV[3], ARGV[1]) end
return 0
"""


@dataclass(frozen=True)
class Missed:
    slug: str
    message_id: str
    seq: int
    author: str  # display name
    body: str  # "" when queued: read from the room at sending time
    sent_ms: int


_FIELDS = [(field.name, int if field.type == "int" else str) for field in fields(Missed)]


def missed_key(person: str) -> str:
    return person_key(person, "missed")


async def schedule(redis: Redis, persons: Iterable[str], item: Missed, delay_seconds: int) -> None:
    """Email `persons` about `item` unless they see it within `delay_seconds` (0: never)."""
    if delay_seconds <= 0:
        return
    due = item.sent_ms + delay_seconds * 1000
    entry = json.dumps({**asdict(item), "due": due}, ensure_ascii=False)
    async with redis.pipeline(transaction=False) as pipe:
        for person in set(persons):
            pipe.rpush(missed_key(person), entry)
            pipe.ltrim(missed_key(person), -KEEP_ITEMS, -1)
            pipe.expire(missed_key(person), KEEP_SECONDS)
            pipe.zadd(DUE, {person: due}, lt=True)
        await pipe.execute()


async def forget(redis: Redis, person: str) -> None:
    """A deleted account: no job of theirs is due or leased (their items go with their keys)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrem(DUE, person)
        pipe.zrem(LEASED, person)
        await pipe.execute()


async def enabled(redis: Redis, person: str) -> bool:
    return bool(await redis.hget(person_key(person, "profile"), "mention_mail") != "0")


async def set_enabled(redis: Redis, person: str, on: bool) -> None:
    await redis.hset(person_key(person, "profile"), "mention_mail", "1" if on else "0")


def _parse(raw: str) -> tuple[Missed, int] | None:
    try:
        data = json.loads(raw)
        item = Missed(**{name: kind(data[name]) for name, kind in _FIELDS})  # type: ignore[arg-type]
        return item, int(data["due"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


async def _still_missed(redis: Redis, person: str, item: Missed) -> membership.Room | None:
    """The room, if the person may read it and has neither read the item nor had a socket
    open since it was sent."""
    if item.seq and await unread.mark_of(redis, person, item.slug) >= item.seq:
        return None
    if await unread.last_seen(redis, person) >= item.sent_ms / 1000:
        return None
    return await membership.readable(redis, item.slug, person)


async def _as_it_is_now(
    redis: Redis, person: str, item: Missed
) -> tuple[Missed, membership.Room] | None:
    """The item with the message's text as it is now, and its room; None when it is no longer
    news for the person: seen, deleted, or edited so that it no longer mentions them. The
    queue holds no text, so a deleted message's text is nowhere in Redis."""
    room = await _still_missed(redis, person, item)
    if room is None:
        return None
    message = await versions.current(redis, item.slug, item.message_id)
    if message is None or message.deleted:
        return None
    named = {mentioned for _, mentioned in message.mentions}
    if room.kind != membership.DIRECT and person not in named:
        return None
    return replace(item, body=message.body), room


async def _deliver(app: Quart, redis: Redis, person: str) -> int | None:
    """Once an item is due, one email listing every item still missed (later ones too, so
    the hourly cap does not hold them back); when to look again (ms), or None."""
    now, config = int(time.time() * 1000), app.config
    profile = person_key(person, "profile")
    email, locale, zone, on = await redis.hmget(profile, ["email", "locale", "tz", "mention_mail"])
    keep: dict[str, tuple[str, Missed, int, membership.Room]] = {}  # by message id
    drop = []
    for raw in await redis.lrange(missed_key(person), 0, -1):
        found = _parse(raw)
        kept = None
        if found and email and on != "0" and found[0].message_id not in keep:
            kept = await _as_it_is_now(redis, person, found[0])
        if found and kept:
            keep[found[0].message_id] = (raw, kept[0], found[1], kept[1])
        else:
            drop.append(raw)
    if drop:
        log.info("mention email: %d items no longer news (seen, gone or edited)", len(drop))
    await _remove(redis, person, drop)
    first_due = min((due for _, _, due, _ in keep.values()), default=None)
    if first_due is None or first_due > now:
        return first_due
    rate_key = person_key(person, "mention-mails")
    wait = await ratelimit.peek(redis, rate_key, config["MENTION_EMAILS_PER_HOUR"], 3600)
    if wait:
        return now + wait * 1000  # the items wait too: the next email lists them all
    variant = Variant(
        i18n.known_locale(locale) or i18n.DEFAULT_LOCALE,
        i18n.known_time_zone(zone) or i18n.DEFAULT_TIME_ZONE,
    )
    items = [(item, room.title_for(person), room.kind) for _, item, _, room in keep.values()]
    try:
        message = await _email(app, str(email), items, variant)
        await mailer.send(message, config["SMTP"], config["SMTP_TIMEOUT_SECONDS"])
    except mailer.MailError as error:
        tries = int(await redis.incr(person_key(person, "missed-tries")))
        await redis.expire(person_key(person, "missed-tries"), 86400)
        if tries < MAX_TRIES and not isinstance(error, mailer.NeedsSmtpUtf8):
            log.warning("mention email not sent (try %d, will retry): %s", tries, error)
            return now + min(3600, 30 << tries) * 1000
        log.warning("mention email not sent, %d items dropped: %s", len(keep), error)
    else:
        await ratelimit.count(redis, rate_key, 3600)
        log.info("mention email sent (%d items)", len(keep))
    await redis.delete(person_key(person, "missed-tries"))
    await _remove(redis, person, [raw for raw, _, _, _ in keep.values()])
    return None


async def _remove(redis: Redis, person: str, raws: list[str]) -> None:
    if raws:
        async with redis.pipeline(transaction=True) as pipe:  # one key, so one slot
            for raw in raws:
                pipe.lrem(missed_key(person), 1, raw)
            await pipe.execute()


async def _email(
    app: Quart, to: str, items: list[tuple[Missed, str, str]], variant: Variant
) -> EmailMessage:
    """Subject, text and HTML in the person's language, times in their zone."""
    public = app.config["PUBLIC_URL"]

    def shown(item: Missed, room: str, kind: str) -> dict[str, object]:
        when = datetime.fromtimestamp(item.sent_ms / 1000, UTC)
        body = item.body if len(item.body) <= SHOWN_CHARS else item.body[:SHOWN_CHARS] + "…"
        return {
            "room": room,
            "direct": kind == membership.DIRECT,
            "author": item.author,
            "body": body,
            "time": format_datetime(
                when, "long", tzinfo=ZoneInfo(variant.time_zone), locale=variant.locale
            ),
            "link": f"{public}/rooms/{quote(item.slug, safe='')}#m-{item.message_id}",
        }

    listed = [shown(*item) for item in items]
    site, settings = urlsplit(public).netloc, f"{public}/settings"
    context = {"items": listed, "count": len(listed), "site": site, "settings_link": settings}
    return await mailer.person_email(app, to, "mentions", variant, context)


def init_app(app: Quart) -> None:
    @app.while_serving
    async def send_missed_mentions():  # type: ignore[no-untyped-def]
        delay = int(app.config["MENTION_EMAIL_DELAY_SECONDS"])
        if not delay:
            yield
            return
        stopping = asyncio.Event()
        task = asyncio.create_task(_loop(app, min(5.0, max(0.5, delay / 4)), stopping))
        yield
        stopping.set()
        # A round under way may be sending: let it end, so its job is not sent twice.
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, 3)


async def _loop(app: Quart, interval: float, stopping: asyncio.Event) -> None:
    down = False
    while not stopping.is_set():
        try:
            await _round(app, store.redis(app))
            if down:
                log.info("mention emails: Redis is back")
            down = False
        except store.REDIS_DOWN as error:
            if not down:
                log.warning("mention emails wait, Redis unreachable: %s", error)
            down = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)


async def _round(app: Quart, redis: Redis) -> None:
    # Longer than any send can take (the SMTP timeout bounds each of its few steps).
    lease_ms = (120 + 10 * int(app.config["SMTP_TIMEOUT_SECONDS"])) * 1000
    while True:
        lease, *claimed = await redis.eval(_CLAIM, 2, DUE, LEASED, lease_ms, BATCH)
        await asyncio.gather(*(_job(app, redis, person, lease) for person in claimed))
        if len(claimed) < BATCH:
            return


async def _job(app: Quart, redis: Redis, person: str, lease: int) -> None:
    try:
        next_due = await _deliver(app, redis, person)
    except store.REDIS_DOWN as error:  # the lease runs out, and the job runs again
        log.warning("mention email job stopped, Redis unreachable: %s", error)
        return
    except Exception:  # a bug or unforeseen data: logged once, the job ends (items kept)
        log.exception("mention email job failed")
        next_due = None
    await redis.eval(_FINISH, 2, DUE, LEASED, person, lease, "" if next_due is None else next_due)
