"""Older releases' key names, renamed once to today's before a worker serves.

Release 2026-12 gave a room's stream and epoch its hash tag (`stream:<slug>` became
`{r:<slug>}:stream`, chat/keys.py) so the same keys work on a cluster. On one server the
first worker to start renames them (RENAMENX keeps a stream's consumer groups) and records
the schema; the others wait for it. Stop every host before upgrading: a host still running
the older release would go on writing the old names. A cluster is always started with
today's names (the keys of an old single server are moved with a dump, not by us).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from quart import Quart
from redis.exceptions import ResponseError

from chat import archiver, history, store

log = logging.getLogger("chat.upgrade")

SCHEMA_KEY = "schema"
SCHEMA = "2"
LOCK_KEY = "schema:upgrading"
LOCK_SECONDS = 300
RENAMED = {"stream:": history.stream_key, "epoch:": history.epoch_key}


async def upgrade(redis: Any, cluster: bool) -> None:
    if await redis.get(SCHEMA_KEY) == SCHEMA:
        return
    if cluster:
        await redis.set(SCHEMA_KEY, SCHEMA)
        return
    token = secrets.token_hex(8)
    if not await redis.set(LOCK_KEY, token, nx=True, ex=LOCK_SECONDS):
        await _wait_for_the_other_worker(redis)
        return
    try:
        moved = await _rename_room_keys(redis)
        await redis.set(SCHEMA_KEY, SCHEMA)
        if moved:
            log.info("upgrade: %d room keys renamed to their hash-tagged names", moved)
    finally:
        if await redis.get(LOCK_KEY) == token:
            await redis.delete(LOCK_KEY)


async def _rename_room_keys(redis: Any) -> int:
    moved = 0
    for prefix, new_name in RENAMED.items():
        async for old in redis.scan_iter(match=f"{prefix}*", count=1000):
            new = new_name(old.removeprefix(prefix))
            try:
                if await redis.renamenx(old, new):
                    moved += 1
                else:
                    log.error("upgrade: both %s and %s exist; %s is left as it was", old, new, old)
            except ResponseError as error:  # gone meanwhile (expired)
                log.warning("upgrade: cannot rename %s: %s", old, error)
    listed = await redis.smembers(archiver.ARCHIVED_STREAMS)
    legacy = [name for name in listed if name.startswith("stream:")]
    if legacy:
        await redis.sadd(
            archiver.ARCHIVED_STREAMS,
            *(history.stream_key(name.removeprefix("stream:")) for name in legacy),
        )
        await redis.srem(archiver.ARCHIVED_STREAMS, *legacy)
    return moved


async def _wait_for_the_other_worker(redis: Any) -> None:
    deadline = time.monotonic() + LOCK_SECONDS
    while time.monotonic() < deadline:
        if await redis.get(SCHEMA_KEY) == SCHEMA:
            return
        if not await redis.exists(LOCK_KEY):
            if await redis.get(SCHEMA_KEY) == SCHEMA:  # it finished just now
                return
            break  # it died half way: the next start redoes it
        await asyncio.sleep(0.2)
    raise RuntimeError("another worker's key upgrade did not finish; start again")


def init_app(app: Quart) -> None:
    @app.before_serving
    async def upgrade_keys() -> None:
        try:
            await upgrade(store.redis(app), store.is_cluster(app))
        except store.REDIS_DOWN as error:  # served anyway, as ever when Redis is down
            log.error(
                "upgrade: Redis unreachable, key names not checked (%s); if this is the first "
                "start of this release, restart once Redis is back to rename older keys",
                error,
            )
