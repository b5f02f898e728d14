"""The real server: `make run`'s entry point, start-up errors, workers, slow clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from chat.embedded_redis import free_port
from tests.conftest import SECRET
from tests.servers import ROOT, AppServer, connection_owners, descendants_of
from tests.support import GENEROUS_LIMITS, Inbox, SmtpServer

pytestmark = pytest.mark.slow


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_make_run_entry_serves_and_leaves_no_process(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    env.update(
        CHAT_BIND=f"127.0.0.1:{port}", CHAT_INSTANCE_PATH=str(tmp_path), CHAT_COOKIE_SECURE="false"
    )
    log = tmp_path / "run.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=output, stderr=output
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/login", timeout=1
                ) as response:
                    assert response.status == 200
                    assert "Send code" in response.read().decode()
                    break
            except OSError:
                assert time.monotonic() < deadline, "make run's server did not come up"
                assert process.poll() is None, log.read_text()
                time.sleep(0.2)
        family = descendants_of(process.pid)
        assert family, "expected the embedded Redis and a worker as children"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        time.sleep(0.5)
        assert [pid for pid in family if alive(pid)] == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(
    ("entry", "env", "setting"),
    [
        ("app.py", {"CHAT_SMTP_URL": "ftp://mail.example.org"}, "CHAT_SMTP_URL"),
        ("app.py", {"CHAT_SMTP_URL": "smtp://host:notaport"}, "CHAT_SMTP_URL"),
        ("app.py", {"CHAT_REDIS_URL": "http://localhost:6379"}, "CHAT_REDIS_URL"),
        (
            "app.py",
            {"CHAT_ENV": "production", "CHAT_REDIS_URL": "redis://127.0.0.1:1/0"},
            "CHAT_SECRET_KEY",
        ),
        (
            "chat.serve",
            {
                "CHAT_ENV": "production",
                "CHAT_REDIS_URL": "redis://127.0.0.1:1/0",
                "CHAT_SECRET_KEY": "k" * 40,
            },
            "CHAT_PUBLIC_URL",
        ),
        ("app.py", {"CHAT_PUBLIC_URL": "chat.example.org"}, "CHAT_PUBLIC_URL"),
        ("app.py", {"CHAT_PUBLIC_URL": "https://chat.example.org/chat"}, "CHAT_PUBLIC_URL"),
        (
            "app.py",
            {"CHAT_CODE_SENDS_PER_EMAIL_PER_HOUR": "5"},
            "CHAT_CODE_SENDS_PER_EMAIL_PER_HOUR",
        ),
        ("app.py", {"CHAT_WORKERS": "many"}, "CHAT_WORKERS"),
        ("app.py", {"CHAT_BIND": "8000"}, "CHAT_BIND"),
        ("app.py", {"CHAT_CODE_TTL_SECONDS": "-5"}, "CHAT_CODE_TTL_SECONDS"),
        ("app.py", {"CHAT_COOKIE_SECURE": "maybe"}, "CHAT_COOKIE_SECURE"),
        ("app.py", {"CHAT_ALLOWED_ORIGINS": "chat.example.org"}, "CHAT_ALLOWED_ORIGINS"),
        ("app.py", {"CHAT_PROXY_HOPS": "-1"}, "CHAT_PROXY_HOPS"),
        ("app.py", {"CHAT_REDIS_URL": "redis+cluster://a:1,b"}, "CHAT_REDIS_URL"),
        ("chat.serve", {"CHAT_REDIS_URL": "redis+cluster://a:7000/3"}, "CHAT_REDIS_URL"),
        # The production entry (the container's CMD) also needs Redis.
        ("chat.serve", {}, "CHAT_REDIS_URL"),
        (
            "chat.serve",
            {"CHAT_REDIS_URL": "redis://127.0.0.1:1/0", "CHAT_WORKERS": "0"},
            "CHAT_WORKERS",
        ),
    ],
)
def test_bad_setting_stops_start_up_with_one_line(
    entry: str, env: dict[str, str], setting: str, tmp_path: Path
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    result = subprocess.run(
        [sys.executable, *(["-m", entry] if entry == "chat.serve" else [entry])],
        cwd=ROOT,
        env={**clean, "CHAT_INSTANCE_PATH": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip().splitlines()
    assert len(output) == 1, output
    assert output[0].startswith(f"Configuration error: {setting}: ")
    assert "Traceback" not in result.stderr


async def sign_in_http(base: str, inbox: Inbox, address: str) -> str:
    """Sign in over real HTTP; the Cookie header value for the session."""
    async with httpx.AsyncClient(base_url=base) as client:
        before = len(inbox.to(address))
        response = await client.post("/login", data={"email": address})
        assert response.status_code == 200
        code = await inbox.wait_for_code(address, after=before)
        response = await client.post("/login/code", data={"email": address, "code": code})
        assert response.status_code == 303
        return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


def socket_url(server: AppServer, room: str = "general") -> str:
    return f"ws://127.0.0.1:{server.port}/rooms/{room}/ws"


async def wait_for_text(ws: Any, needle: str, timeout: float = 10) -> str:
    async with asyncio.timeout(timeout):
        while True:
            frame = await ws.recv()
            if needle in frame:
                return str(frame)


def server_settings(redis_url: str, smtp: SmtpServer, **overrides: Any) -> dict[str, Any]:
    return {
        "REDIS_URL": redis_url,
        "SMTP_URL": smtp.url,
        "SECRET_KEY": SECRET,
        "COOKIE_SECURE": False,
        **GENEROUS_LIMITS,
        **overrides,
    }


async def test_two_workers_share_rooms(
    redis_url: str, smtp_server: SmtpServer, inbox: Inbox
) -> None:
    server = AppServer(server_settings(redis_url, smtp_server), workers=2)
    await asyncio.to_thread(server.start)
    try:
        alice = await sign_in_http(server.url, inbox, "alice@example.org")
        bob = await sign_in_http(server.url, inbox, "bob@example.org")
        # Several sockets so that, whichever worker each lands on, both workers are involved.
        readers = [
            await websockets.connect(socket_url(server), additional_headers={"Cookie": bob})
            for _ in range(4)
        ]
        async with websockets.connect(
            socket_url(server), additional_headers={"Cookie": alice}
        ) as sender:
            await sender.send(
                json.dumps({"body": "to every worker", "client_id": "multi-worker-1"})
            )
            for reader in readers:
                await wait_for_text(reader, "to every worker")
        for reader in readers:
            await reader.close()
    finally:
        await asyncio.to_thread(server.stop)


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) / 1024  # type: ignore[union-attr]


async def stalled_reader(server: AppServer, cookie: str) -> Any:
    """A client that buffers at most one frame and never reads: the kernel buffers between
    it and the server fill up, and the server's sends to it block."""
    tiny = socket.create_connection(("127.0.0.1", server.port))
    tiny.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return await websockets.connect(
        socket_url(server),
        sock=tiny,
        additional_headers={"Cookie": cookie},
        max_queue=1,
        compression=None,
    )


async def test_client_that_stops_reading_is_dropped_and_others_keep_up(
    redis_url: str, smtp_server: SmtpServer, inbox: Inbox, tmp_path: Path
) -> None:
    """A room flooded with ~32 MB while three of its readers are stalled: they are cut off
    with 1013, the sender gets everything in order, and the worker's memory stays flat
    (unbounded queues would have to keep everything the stalled readers did not take)."""
    server = AppServer(
        server_settings(
            redis_url, smtp_server, WS_QUEUE_SIZE=32, WS_MESSAGES_PER_SECOND=100000, WS_BURST=100000
        ),
        log_path=tmp_path / "server.log",
    )
    await asyncio.to_thread(server.start)
    try:
        alice = await sign_in_http(server.url, inbox, "alice@example.org")
        bob = await sign_in_http(server.url, inbox, "bob@example.org")
        stalled = [await stalled_reader(server, bob) for _ in range(3)]
        [worker] = server.worker_pids()
        async with websockets.connect(
            socket_url(server), additional_headers={"Cookie": alice}
        ) as sender:
            await wait_for_text(sender, 'id="online"')
            body = "x" * 3900
            seen: list[str] = []

            async def read_all() -> None:
                while True:
                    seen.extend(re.findall(r">(\d{4}) x", str(await sender.recv())))

            reading = asyncio.create_task(read_all())
            rss = []  # the worker's RSS after each quarter of a ~32 MB flood
            for n in range(8000):
                await sender.send(
                    json.dumps({"body": f"{n:04d} {body}", "client_id": f"flood-{n:06d}"})
                )
                if n % 2000 == 1999:
                    async with asyncio.timeout(30):
                        while len(seen) <= n:
                            await asyncio.sleep(0.05)
                    rss.append(rss_mb(worker))
            reading.cancel()
            assert seen == [f"{n:04d}" for n in range(8000)]  # the sender got everything, in order
        # Flat once the stalled readers' queues are full and they are cut off; with unbounded
        # queues it climbs by ~6 MB a quarter (measured: 63.8 -> 64.2 -> 73.4 -> 82.8 MB).
        assert max(rss) - rss[0] < 4, f"worker RSS over the flood: {rss} MB"
        # Once they read again (with room to read fast) they find what was already buffered,
        # then the close: never the whole flood.
        for ws in stalled:
            with contextlib.suppress(OSError):  # already torn down: nothing left to read fast
                ws.transport.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 2**20
                )
            frames = 0
            with contextlib.suppress(websockets.ConnectionClosed):
                async with asyncio.timeout(30):
                    while True:
                        await ws.recv()
                        frames += 1
            assert 0 < frames < 8000
            # 1013 "try again later"; 1006 (no close frame) when hypercorn's writer for this
            # connection is still stuck behind the backlog, e.g. with a ping. hx-ws reconnects
            # after either.
            assert ws.close_code in (1013, 1006), ws.close_code
        assert "closing a socket that fell behind" in (tmp_path / "server.log").read_text()
    finally:
        await asyncio.to_thread(server.stop)


async def test_deflate_declined_and_oversized_frame_refused_with_1009(
    redis_url: str, smtp_server: SmtpServer, inbox: Inbox
) -> None:
    server = AppServer(server_settings(redis_url, smtp_server))
    await asyncio.to_thread(server.start)
    try:
        cookie = await sign_in_http(server.url, inbox, "big@example.org")
        # Offered like Chromium does, permessage-deflate is declined (chat/websocket_deflate.py).
        async with websockets.connect(
            socket_url(server), additional_headers={"Cookie": cookie}
        ) as plain:
            assert plain.request is not None and "permessage-deflate" in str(plain.request.headers)
            assert plain.response is not None
            assert "Sec-WebSocket-Extensions" not in plain.response.headers
        async with websockets.connect(
            socket_url(server),
            additional_headers={"Cookie": cookie},
            compression=None,
            max_size=None,
        ) as ws:
            await wait_for_text(ws, 'id="online"')
            await ws.send(
                json.dumps({"body": os.urandom(40000).hex(), "client_id": "too-big-frame"})
            )
            with pytest.raises(websockets.ConnectionClosed) as closed:
                async with asyncio.timeout(10):
                    while True:
                        await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    finally:
        await asyncio.to_thread(server.stop)


def test_production_server_limits_are_configured() -> None:
    """hypercorn.toml (used by the container and tests) carries the socket protections."""
    from hypercorn.config import Config

    config = Config.from_toml(str(ROOT / "hypercorn.toml"))
    assert config.websocket_max_message_size == 64 * 1024  # oversize frames -> 1009
    assert config.websocket_ping_interval is not None and config.websocket_ping_interval <= 30
    assert config.graceful_timeout <= 10


async def closed_with(ws: Any, timeout: float = 10) -> int | None:
    """Read until the server closes `ws`; the close code it sent (None: no close frame)."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


async def sockets_on_every_worker(
    server: AppServer, cookie: str, per_worker: int = 1, limit: int = 40
) -> dict[int, list[Any]]:
    """Open sockets until each worker holds at least `per_worker`; worker pid -> its sockets."""
    workers = server.worker_pids()
    by_worker: dict[int, list[Any]] = {pid: [] for pid in workers}
    for _ in range(limit):
        ws = await websockets.connect(socket_url(server), additional_headers={"Cookie": cookie})
        await wait_for_text(ws, 'id="online"')
        owner = connection_owners(workers)[ws.local_address[1]]
        by_worker[owner].append(ws)
        if all(len(sockets) >= per_worker for sockets in by_worker.values()):
            return by_worker
    raise AssertionError(f"sockets did not spread over the workers: {by_worker}")


async def socket_on(server: AppServer, cookie: str, worker: int, limit: int = 40) -> Any:
    """A socket that landed on `worker` (the others opened on the way are closed again)."""
    for _ in range(limit):
        ws = await websockets.connect(socket_url(server), additional_headers={"Cookie": cookie})
        await wait_for_text(ws, 'id="online"')
        if connection_owners([worker]).get(ws.local_address[1]) == worker:
            return ws
        await ws.close()
    raise AssertionError(f"no socket landed on worker {worker}")


async def test_sigterm_closes_open_sockets_with_1012_and_exits_within_the_grace_period(
    redis_url: str, smtp_server: SmtpServer, inbox: Inbox, tmp_path: Path
) -> None:
    server = AppServer(server_settings(redis_url, smtp_server), log_path=tmp_path / "server.log")
    await asyncio.to_thread(server.start)
    opened: list[socket.socket] = []
    try:
        cookie = await sign_in_http(server.url, inbox, "restart@example.org")
        sockets = [
            await websockets.connect(socket_url(server), additional_headers={"Cookie": cookie})
            for _ in range(3)
        ]
        for ws in sockets:
            await wait_for_text(ws, 'id="online"')
        # One more peer that completed the handshake and then never reads or answers again.
        mute = socket.create_connection(("127.0.0.1", server.port))
        opened.append(mute)  # closed whatever happens: a leaked socket fails a later test
        mute.sendall(
            b"GET /rooms/general/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nCookie: " + cookie.encode() + b"\r\n\r\n"
        )
        assert b" 101 " in mute.recv(4096)
        assert server.process is not None
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*(closed_with(ws) for ws in sockets))
        assert codes == [1012, 1012, 1012]  # "service restart": hx-ws reconnects
        exit_code = await asyncio.to_thread(server.process.wait, 20)
        stopped_in = time.monotonic() - started
        assert exit_code == 0
        # graceful_timeout, even with the mute peer; then the workers' own clean-up (6.1 s was
        # seen once with the whole suite running on 2 cores).
        assert stopped_in < 5.0 + 2.0, stopped_in
        log = (tmp_path / "server.log").read_text()
        assert "closing 4 sockets with 1012" in log, log
    finally:
        for leftover in opened:
            leftover.close()
        await asyncio.to_thread(server.stop)


async def test_sigterm_to_one_worker_restarts_only_that_worker(
    redis_url: str, smtp_server: SmtpServer, inbox: Inbox, tmp_path: Path
) -> None:
    server = AppServer(
        server_settings(redis_url, smtp_server), workers=2, log_path=tmp_path / "server.log"
    )
    await asyncio.to_thread(server.start)
    by_worker: dict[int, list[Any]] = {}
    try:
        cookie = await sign_in_http(server.url, inbox, "rolling@example.org")
        by_worker = await sockets_on_every_worker(server, cookie)
        leaving, staying = list(by_worker)
        os.kill(leaving, signal.SIGTERM)
        assert {await closed_with(ws) for ws in by_worker[leaving]} == {1012}
        async with asyncio.timeout(15):
            while len(workers := server.worker_pids()) < 2 or leaving in workers:
                await asyncio.sleep(0.1)
        assert staying in workers
        for ws in by_worker[staying]:  # the other worker's sockets stayed up and still work
            await ws.send(json.dumps({"body": "still here", "client_id": f"still-{ws.id.hex}"}))
            await wait_for_text(ws, "still here")
        log = (tmp_path / "server.log").read_text()
        assert f"worker {leaving} ended (exit 0); starting a new one" in log, log
    finally:
        for sockets in by_worker.values():
            for ws in sockets:
                await ws.close()
        await asyncio.to_thread(server.stop)
