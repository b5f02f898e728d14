"""Redis going away and coming back: honest errors while down, healing without a restart."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart

from chat.embedded_redis import EmbeddedRedis
from tests.conftest import SECRET, sign_in
from tests.support import Inbox, SmtpServer
from tests.test_live import receive_until, send

pytestmark = pytest.mark.slow


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis server this test may stop and start (same port, AOF on)."""
    server = EmbeddedRedis(tmp_path / "redis", appendonly=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def faulty_app(own_redis: EmbeddedRedis, smtp_server: SmtpServer) -> Any:
    from app import create_app

    app = create_app(
        {
            "REDIS_URL": own_redis.url,
            "SMTP_URL": smtp_server.url,
            "SECRET_KEY": SECRET,
            "COOKIE_SECURE": False,
            "CODE_SENDS_PER_IP_PER_HOUR": 1000,
        }
    )
    async with app.test_app():
        yield app


async def wait_ready(client: Any, timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while (await client.get("/readyz")).status_code != 200:
            await asyncio.sleep(0.1)


async def test_redis_restart_mid_chat(
    faulty_app: Quart, own_redis: EmbeddedRedis, inbox: Inbox
) -> None:
    alice, bob = faulty_app.test_client(), faulty_app.test_client()
    await sign_in(alice, inbox, "alice@example.org")
    await sign_in(bob, inbox, "bob@example.org")
    async with alice.websocket("/rooms/general/ws") as a, bob.websocket("/rooms/general/ws") as b:
        await receive_until(b, "alice joined")
        await send(a, "before the outage", client_id="outage-msg-1")
        await receive_until(b, "before the outage")

        await asyncio.to_thread(own_redis.stop)
        page = await alice.get("/")
        assert page.status_code == 503
        assert "cannot reach its database" in await page.get_data(as_text=True)
        assert (await alice.get("/healthz")).status_code == 503
        assert (await alice.get("/readyz")).status_code == 503
        await send(a, "during the outage", client_id="outage-msg-2")
        frames = await receive_until(a, "Not delivered")
        assert "Your text is kept" in frames[-1]

        await asyncio.to_thread(own_redis.start)
        await wait_ready(alice)
        assert (await alice.get("/")).status_code == 200  # healed, no restart
        await send(a, "after the outage", client_id="outage-msg-3")
        frames = await receive_until(b, "after the outage", timeout=10)
        delivered = "".join(frames)
        assert "during the outage" not in delivered  # never stored, never shown
        assert delivered.count("after the outage") == 1


async def test_sign_in_fails_closed_while_redis_is_down(
    faulty_app: Quart, own_redis: EmbeddedRedis, inbox: Inbox
) -> None:
    client = faulty_app.test_client()
    await client.post("/login", form={"email": "down@example.org"})
    code = await inbox.wait_for_code("down@example.org")
    await asyncio.to_thread(own_redis.stop)
    response = await client.post("/login/code", form={"email": "down@example.org", "code": code})
    assert response.status_code == 503
    assert "cannot reach its database" in await response.get_data(as_text=True)
    await asyncio.to_thread(own_redis.start)
    await wait_ready(client)
    response = await client.post("/login/code", form={"email": "down@example.org", "code": code})
    assert response.status_code == 303  # the code survived (AOF) and still works once


@pytest.fixture
def forgetful_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis server without persistence: a restart loses everything."""
    server = EmbeddedRedis(tmp_path / "redis-nopersist", appendonly=False)
    server.start()
    yield server
    server.stop()


async def test_lost_history_makes_clients_reload_not_show_a_hole(
    forgetful_redis: EmbeddedRedis, smtp_server: SmtpServer, inbox: Inbox
) -> None:
    from app import create_app

    app = create_app(
        {
            "REDIS_URL": forgetful_redis.url,
            "SMTP_URL": smtp_server.url,
            "SECRET_KEY": SECRET,
            "COOKIE_SECURE": False,
        }
    )
    async with app.test_app():
        alice = app.test_client()
        await sign_in(alice, inbox, "alice@example.org")
        page = await (await alice.get("/rooms/general")).get_data(as_text=True)
        url = re.search(r'hx-ws:connect="([^"]+)"', page).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
        async with alice.websocket(url) as a:
            await receive_until(a, 'id="online"')
            await send(a, "soon forgotten", client_id="forgotten-msg-1")
            await receive_until(a, "soon forgotten")

            await asyncio.to_thread(forgetful_redis.stop)
            await asyncio.to_thread(forgetful_redis.start)  # empty now
            frames = await receive_until(a, "lost this room", timeout=15)
            assert 'hx-swap-oob="innerHTML"' in frames[-1]  # the list is replaced, not appended to
        await sign_in(alice, inbox, "alice@example.org")
        async with alice.websocket(url) as again:  # an old page reconnecting later
            frames = await receive_until(again, "lost this room", timeout=5)
            assert "soon forgotten" not in "".join(frames)


MESSAGE = re.compile(r'id="m-(\d+-\d+)"')


async def test_history_check_every_acknowledged_message_once_in_order(
    faulty_app: Quart, own_redis: EmbeddedRedis, inbox: Inbox
) -> None:
    """Jepsen-style: record sends, acks and deliveries across a Redis restart, then check them."""
    names = ["ann", "ben", "cat"]
    clients = {}
    for name in names:
        clients[name] = faulty_app.test_client()
        await sign_in(clients[name], inbox, f"{name}@example.org")
    received: dict[str, list[str]] = {name: [] for name in names}
    acked: list[str] = []

    async def reader(name: str, ws: Any, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with asyncio.timeout(0.2):
                    frame = await ws.receive()
            except TimeoutError:
                continue
            received[name] += MESSAGE.findall(frame)
            if 'id="compose"' in frame and name == "ann":
                acked.append(frame)

    sockets = {}
    for name in names:
        sockets[name] = clients[name].websocket("/rooms/general/ws")
        await sockets[name].__aenter__()
    stop = asyncio.Event()
    readers = [asyncio.create_task(reader(n, sockets[n], stop)) for n in names]
    try:
        for n in range(30):
            if n == 10:
                await asyncio.to_thread(own_redis.stop)
            if n == 15:
                await asyncio.to_thread(own_redis.start)
                await wait_ready(clients["ann"])
            await send(sockets["ann"], f"msg {n}", client_id=f"history-check-{n:03d}")
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asyncio.gather(*readers)
        for name in names:
            await sockets[name].__aexit__(None, None, None)

    from redis import Redis as SyncRedis

    with SyncRedis.from_url(own_redis.url, decode_responses=True) as redis:
        stored = [entry_id for entry_id, _ in redis.xrange("stream:general")]
    assert len(acked) == len(stored)  # every acknowledged message was stored, and only those
    assert 15 <= len(stored) <= 25  # sends during the outage were refused, not silently lost
    for name in names:
        # every client saw exactly the stored messages: all of them, once, in stream order
        assert received[name] == stored, name


async def test_a_killed_servers_people_drop_off_the_online_list(
    redis_url: str, smtp_server: SmtpServer, inbox: Inbox, make_app: Any
) -> None:
    """A server process dies with SIGKILL: its sockets' presence expires and others are told."""
    import os
    import signal

    import websockets

    from tests.servers import AppServer, descendants_of
    from tests.test_server import server_settings, sign_in_http, socket_url, wait_for_text

    doomed = AppServer(server_settings(redis_url, smtp_server))
    await asyncio.to_thread(doomed.start)
    survivor = await make_app()
    watcher = survivor.test_client()
    await sign_in(watcher, inbox, "watcher@example.org")
    try:
        cookie = await sign_in_http(doomed.url, inbox, "ghost@example.org")
        ghost = await websockets.connect(socket_url(doomed), additional_headers={"Cookie": cookie})
        await wait_for_text(ghost, "ghost joined")
        async with watcher.websocket("/rooms/general/ws") as watching:
            frames = await receive_until(watching, 'id="online"')
            assert "ghost" in frames[-1].split('id="online"')[1]
            assert doomed.process is not None
            for pid in [doomed.process.pid, *descendants_of(doomed.process.pid)]:
                os.kill(pid, signal.SIGKILL)
            started = asyncio.get_running_loop().time()
            frames = await receive_until(watching, "ghost left", timeout=60)
            waited = asyncio.get_running_loop().time() - started
            assert waited <= 55  # 30 s expiry + one 10 s sweep, plus slack for a loaded machine
            assert "ghost" not in frames[-1].split('id="online"')[1]
        ghost.transport.abort()
    finally:
        await asyncio.to_thread(doomed.stop)
