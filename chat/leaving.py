"""Deleting an account: the person leaves, and what they wrote is replaced by "Message deleted".

At once (in the request): every session ends and its sockets close; the address is unlinked
from the person (it can sign up again, as someone new); the directory entry, the memberships
and every key of the person (profile, unread marks, mentions, mention emails...) are deleted.

Then a job, kept in Redis until done so a restart resumes it: each of the person's messages
is deleted the way its author would delete it (a versioned change every viewer receives) and
their reactions are taken back. Every host's archive erases them too: the job is put on
ERASURES, a stream each host's archiver reads with its own group (chat/archiver.py), which
also reaches messages Redis no longer holds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable

from quart import Quart
from redis.asyncio import Redis

from chat import (
    archiver,
    changes,
    history,
    membership,
    mention_mail,
    people,
    presence,
    rooms,
    sessions,
    store,
    tasks,
    versions,
)
from chat.membership import Room
from chat.people import person_key
from chat.problems import ShownError

log = logging.getLogger("chat.leaving")

PENDING = "leaving:pending"  # person -> when its job may be taken again (ms): a lease
EMAILS = "leaving:emails"  # person -> address, until the job is done
LEASE_MS = 10 * 60 * 1000
READ = 500  # stream entries or versions per read
LOOK_SECONDS = 1.0

_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)[1]
if not due then return false end
redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), due)
return due
"""


async def delete_account(redis: Redis, person: str, email: str) -> None:
    """Everything that is the person's, now; their messages by the job. The job is queued
    first and does all of it again: a crash half-way, or a request of theirs still under way
    that writes a key back, leaves nothing behind."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(EMAILS, person, email)
        pipe.zadd(PENDING, {person: 0})
        # The tag finds their messages from before person ids (chat/people.legacy_tag).
        pipe.xadd(archiver.ERASURES, {"person": person, "tag": people.legacy_tag(email)})
        await pipe.execute()
    await _forget(redis, person, email)
    log.info("account deleted; its messages are being erased")


async def _forget(redis: Redis, person: str, email: str) -> None:
    """The person's sessions (their sockets close), address link, directory entry, rooms,
    presence and keys. The address goes first: a sign-in under way then makes someone new."""
    await people.forget(redis, person, email)
    for session_id in await redis.zrange(person_key(person, "sessions"), 0, -1):
        await sessions.revoke(redis, session_id, person)
    slugs = set(await redis.zrange(membership.joined_key(person), 0, -1))
    slugs |= set(await redis.zrange(person_key(person, "rooms"), 0, -1))
    slugs |= set(await rooms.every_open(redis))
    for slug in sorted(slugs):
        await membership.forget_person(redis, slug, person)
        await presence.forget(redis, slug, person)
    await mention_mail.forget(redis, person)
    keys = [key async for key in redis.scan_iter(match=person_key(person, "*"), count=1000)]
    if keys:
        async with redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.delete(key)
            await pipe.execute()


async def erase_messages(redis: Redis, person: str, email: str = "") -> int:
    """Delete every message of the person that Redis still holds and take back their
    reactions, room by room; how many messages changed. Running it twice changes nothing."""
    erased = 0
    tag = people.legacy_tag(email) if email else None
    slugs = sorted(archiver.slug_of(s) for s in await redis.smembers(archiver.ARCHIVED_STREAMS))
    for slug in slugs:
        room = Room(slug, membership.OPEN, slug)  # only the slug matters to a change
        erased += await _erase_in_room(redis, room, person, tag)
        await redis.zadd(PENDING, {person: int(time.time() * 1000) + LEASE_MS}, xx=True)
    return erased


def _wrote(fields: dict[str, str], person: str, tag: str | None) -> bool:
    if not history.is_message(fields):
        return False
    if fields.get("pid"):
        return fields["pid"] == person
    return tag is not None and people.legacy_tag(fields.get("author", "")) == tag


async def _erase_in_room(redis: Redis, room: Room, person: str, tag: str | None) -> int:
    erased, start = 0, "-"
    while entries := await redis.xrange(history.stream_key(room.slug), start, "+", count=READ):
        theirs = [i for i, f in entries if _wrote(f, person, tag)]
        if theirs:  # those already deleted (a job resumed) need no change
            texts = versions.texts(await versions.between(redis, room.slug, theirs[0], theirs[-1]))
            for entry_id in theirs:
                if json.loads(texts.get(entry_id) or "{}").get("d"):
                    continue
                # As an admin would: a message from before person ids names its tag instead.
                if await _changed(changes.delete(room, person, entry_id, admin=True)):
                    erased += 1
        start = "(" + entries[-1][0]
    low = "-"
    while members := await redis.zrangebylex(versions.versions_key(room.slug), low, "+", 0, READ):
        for member in members:
            if f'"{person}"' in member:
                await _take_back_reactions(room, person, member)
        low = "(" + members[-1]
    return erased


async def _take_back_reactions(room: Room, person: str, member: str) -> None:
    entry_id, raw = versions.texts([member]).popitem()
    try:
        reactions = json.loads(raw).get("r") or {}
    except ValueError:
        return
    for emoji, whom in reactions.items():
        if emoji in history.REACTIONS and any(who[0] == person for who in whom):
            await _changed(changes.react(room, person, "", entry_id, emoji, on=False))


async def _changed(change: Awaitable[object]) -> bool:
    """Run one change; a message gone meanwhile (trimmed, or deleted already) is no error."""
    try:
        await change
    except ShownError:
        return False
    return True


async def run_jobs(app: Quart) -> None:
    """Take pending erasures (a lease: a worker that dies mid-way lets another resume)."""
    while True:
        try:
            redis = store.redis(app)
            while person := await redis.eval(_CLAIM, 1, PENDING, int(time.time() * 1000), LEASE_MS):
                email = await redis.hget(EMAILS, person) or ""
                async with app.app_context():
                    await _forget(redis, person, email)
                    erased = await erase_messages(redis, str(person), email)
                    await _forget(redis, person, email)  # what came back while it ran
                async with redis.pipeline(transaction=False) as pipe:
                    pipe.zrem(PENDING, person)
                    pipe.hdel(EMAILS, person)
                    await pipe.execute()
                log.info("erased %d message(s) of a deleted account", erased)
        except store.REDIS_DOWN as error:
            log.warning("account erasure waits, Redis unreachable: %s", error)
        except Exception:  # a bug or unforeseen data: logged, tried again after the lease
            log.exception("account erasure failed")
        await asyncio.sleep(LOOK_SECONDS)


def init_app(app: Quart) -> None:
    tasks.run_while_serving(app, lambda: run_jobs(app))
