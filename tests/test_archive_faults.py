"""The archive through faults: the archiving worker killed mid-batch, Redis restarted."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest
from quart import Quart
from redis import Redis

from chat.embedded_redis import EmbeddedRedis
from tests.servers import AppServer
from tests.support import Inbox, SmtpServer
from tests.test_archive import archived, post_many, wait_acknowledged, wait_archived
from tests.test_faults import faulty_app, own_redis, wait_ready  # noqa: F401 (fixtures)
from tests.test_server import server_settings, sign_in_http

pytestmark = pytest.mark.slow

FAST_SENDING = {"WS_MESSAGES_PER_SECOND": 100_000, "WS_BURST": 100_000}


def lock_holder(lock: Path) -> int | None:
    """The pid holding a flock on this file (/proc/locks: "... FLOCK ... <pid> maj:min:inode")."""
    inode = os.stat(lock).st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if "FLOCK" in parts and int(parts[-3].rsplit(":", 1)[1]) == inode:
            return int(parts[-4])
    return None


async def post_until_answered(http: httpx.AsyncClient, form: dict[str, str]) -> httpx.Response:
    """A form post, sent again (same client id: stored once) if its worker was killed."""
    for _ in range(20):
        try:
            return await http.post("/rooms/general/messages", data=form)
        except httpx.TransportError:
            await asyncio.sleep(0.2)
    raise AssertionError("no worker answered")


def message_ids(redis: Redis, slug: str = "general") -> list[str]:
    return [i for i, fields in redis.xrange(f"{{r:{slug}}}:stream") if "k" not in fields]


async def test_killing_the_archiving_worker_loses_and_repeats_nothing(
    redis_url: str, smtp_server: SmtpServer, inbox: Inbox, redis_sync: Redis, tmp_path: Path
) -> None:
    path = tmp_path / "archive.sqlite3"
    server = AppServer(
        server_settings(redis_url, smtp_server, ARCHIVE_PATH=path, **FAST_SENDING), workers=2
    )
    await asyncio.to_thread(server.start)
    try:
        cookie = await sign_in_http(server.url, inbox, "ada@example.org")
        lock = path.with_name(path.name + ".lock")
        killed: list[int] = []
        async with httpx.AsyncClient(base_url=server.url, headers={"Cookie": cookie}) as http:
            for index in range(600):
                form = {"body": f"note {index}", "client_id": f"note-{index:06d}"}
                response = await post_until_answered(http, form)
                assert response.status_code == 303
                if index % 150 == 75:  # while batches are being written
                    holder = lock_holder(lock) if lock.exists() else None
                    if holder is not None:
                        os.kill(holder, signal.SIGKILL)
                        killed.append(holder)
        assert len(killed) >= 2  # the supervisor started new workers, one took the lock
        posted = message_ids(redis_sync)
        assert len(posted) == 600
        await wait_archived(path, 600, timeout=30)
        assert [entry_id for entry_id, _ in archived(path)] == posted  # each once, in order
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_redis_restart_loses_and_repeats_nothing(
    faulty_app: Quart,  # noqa: F811 (tests/test_faults.py's fixtures)
    own_redis: EmbeddedRedis,  # noqa: F811
    own_archive: Path,
) -> None:
    ids = await post_many(faulty_app, 200)
    await asyncio.to_thread(own_redis.stop)
    await asyncio.sleep(1.5)  # the archiver notices
    await asyncio.to_thread(own_redis.start)
    await wait_ready(faulty_app.test_client())
    ids += await post_many(faulty_app, 200, start=200)
    await wait_archived(own_archive, 400, timeout=30)
    assert [entry_id for entry_id, _ in archived(own_archive)] == ids
    with Redis.from_url(own_redis.url, decode_responses=True) as redis:
        await wait_acknowledged(redis)
