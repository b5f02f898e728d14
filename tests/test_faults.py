"""Faults: Redis lost and back, a worker killed: honest errors, healing without a restart."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from quart import Quart

from chat.embedded_redis import EmbeddedRedis
from tests.conftest import SECRET, sign_in
from tests.servers import AppServer, connection_owners
from tests.support import GENEROUS_LIMITS, Inbox, SmtpServer
from tests.test_live import receive_until, send
from tests.test_server import (
    server_settings,
    sign_in_http,
    socket_on,
    socket_url,
    sockets_on_every_worker,
    wait_for_text,
)

pytestmark = pytest.mark.slow


def running_redis(data_dir: Path, appendonly: bool) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(data_dir, appendonly=appendonly)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis server this test may stop and start (same port, AOF on)."""
    yield from running_redis(tmp_path / "redis", appendonly=True)


@pytest.fixture
async def faulty_app(own_redis: EmbeddedRedis, smtp_server: SmtpServer) -> Any:
    from app import create_app

    app = create_app(
        {
            "REDIS_URL": own_redis.url,
            "SMTP_URL": smtp_server.url,
            "SECRET_KEY": SECRET,
            "COOKIE_SECURE": False,
            "PUBLIC_URL": "http://localhost",
            **GENEROUS_LIMITS,
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
    yield from running_redis(tmp_path / "redis-nopersist", appendonly=False)


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
            # The sessions went with the data: the open page says so instead of going quiet.
            frames = await receive_until(a, "You are signed out", timeout=15)
        await sign_in(alice, inbox, "alice@example.org")
        async with alice.websocket(url) as again:  # the old page, reconnecting
            frames = await receive_until(again, "lost this room", timeout=5)
            assert 'hx-swap-oob="innerHTML"' in frames[0]  # the list is replaced, not appended to
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
        stored = [entry_id for entry_id, _ in redis.xrange("{r:general}:stream")]
    assert len(acked) == len(stored)  # every acknowledged message was stored, and only those
    assert 15 <= len(stored) <= 25  # sends during the outage were refused, not silently lost
    for name in names:
        # every client saw exactly the stored messages: all of them, once, in stream order
        assert received[name] == stored, name


async def test_a_killed_worker_is_replaced_its_clients_catch_up_and_its_people_expire(
    redis_url: str, smtp_server: SmtpServer, inbox: Inbox, tmp_path: Path
) -> None:
    """SIGKILL one of two workers: the supervisor starts a new one, the dead worker's clients
    reconnect and get what they missed, the other worker's clients notice nothing, and people
    who were only on the dead worker drop off the Online list (30 s expiry + sweep)."""
    server = AppServer(
        server_settings(redis_url, smtp_server), workers=2, log_path=tmp_path / "server.log"
    )
    await asyncio.to_thread(server.start)
    opened: list[Any] = []
    try:
        bob = await sign_in_http(server.url, inbox, "bob@example.org")
        by_worker = await sockets_on_every_worker(server, bob, per_worker=2)
        opened += [ws for sockets in by_worker.values() for ws in sockets]
        doomed, survivor = list(by_worker)
        # Alice watches from the surviving worker; Ghost is only on the doomed one.
        alice = await sign_in_http(server.url, inbox, "alice@example.org")
        watcher = await socket_on(server, alice, survivor)
        opened.append(watcher)
        ghost_cookie = await sign_in_http(server.url, inbox, "ghost@example.org")
        opened.append(await socket_on(server, ghost_cookie, doomed))
        await wait_for_text(watcher, "ghost joined")

        await watcher.send(json.dumps({"body": "before the kill", "client_id": "kill-msg-1"}))
        last_seen = {}
        for ws in opened:
            frame = await wait_for_text(ws, "before the kill")
            last_seen[ws] = re.findall(r'id="m-(\d+-\d+)"', frame)[-1]

        os.kill(doomed, signal.SIGKILL)
        for ws in by_worker[doomed]:
            with pytest.raises(websockets.ConnectionClosed):
                async with asyncio.timeout(10):
                    while True:
                        await ws.recv()
        await watcher.send(json.dumps({"body": "while it was down", "client_id": "kill-msg-2"}))
        for ws in by_worker[survivor]:
            await wait_for_text(ws, "while it was down")

        # What hx-ws does after 1006: reconnect with the page's last id, and catch up.
        for ws in by_worker[doomed]:
            again = await websockets.connect(
                socket_url(server) + f"?after={last_seen[ws]}", additional_headers={"Cookie": bob}
            )
            opened.append(again)
            frame = await wait_for_text(again, "while it was down")
            assert frame.count("while it was down") == 1 and "before the kill" not in frame

        async with asyncio.timeout(15):
            while len(workers := server.worker_pids()) < 2 or doomed in workers:
                await asyncio.sleep(0.1)
        assert survivor in workers and server.process is not None
        assert server.process.poll() is None  # the server as a whole never went down
        log = (tmp_path / "server.log").read_text()
        assert f"worker {doomed} ended (killed by SIGKILL); starting a new one" in log, log
        assert connection_owners(workers)[watcher.local_address[1]] == survivor

        started = asyncio.get_running_loop().time()
        frame = await wait_for_text(watcher, "ghost left", timeout=60)
        waited = asyncio.get_running_loop().time() - started
        assert waited <= 55  # 30 s expiry + one 10 s sweep, plus slack for a loaded machine
        online = frame.split('id="online"')[1]
        assert "ghost" not in online and "bob" in online
    finally:
        for ws in opened:
            ws.transport.abort()
        await asyncio.to_thread(server.stop)
