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
from tests.servers import ROOT, AppServer, descendants_of
from tests.support import Inbox, SmtpServer

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
    ("env", "setting"),
    [
        ({"CHAT_SMTP_URL": "ftp://mail.example.org"}, "CHAT_SMTP_URL"),
        ({"CHAT_SMTP_URL": "smtp://host:notaport"}, "CHAT_SMTP_URL"),
        ({"CHAT_REDIS_URL": "http://localhost:6379"}, "CHAT_REDIS_URL"),
        ({"CHAT_ENV": "production", "CHAT_REDIS_URL": "redis://127.0.0.1:1/0"}, "CHAT_SECRET_KEY"),
        ({"CHAT_WORKERS": "many"}, "CHAT_WORKERS"),
        ({"CHAT_BIND": "8000"}, "CHAT_BIND"),
        ({"CHAT_CODE_TTL_SECONDS": "-5"}, "CHAT_CODE_TTL_SECONDS"),
        ({"CHAT_COOKIE_SECURE": "maybe"}, "CHAT_COOKIE_SECURE"),
        ({"CHAT_ALLOWED_ORIGINS": "chat.example.org"}, "CHAT_ALLOWED_ORIGINS"),
        ({"CHAT_PROXY_HOPS": "-1"}, "CHAT_PROXY_HOPS"),
    ],
)
def test_bad_setting_stops_start_up_with_one_line(
    env: dict[str, str], setting: str, tmp_path: Path
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    result = subprocess.run(
        [sys.executable, "app.py"],
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
        "CODE_SENDS_PER_IP_PER_HOUR": 1000,
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


async def test_client_that_stops_reading_is_dropped_and_others_keep_up(
    redis_url: str, smtp_server: SmtpServer, inbox: Inbox, tmp_path: Path
) -> None:
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
        # Bob's client buffers at most one frame and never reads: the kernel buffers fill up,
        # the server's sends to him block, his queue overflows and he must be cut off.
        tiny = socket.create_connection(("127.0.0.1", server.port))
        tiny.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled = await websockets.connect(
            socket_url(server),
            sock=tiny,
            additional_headers={"Cookie": bob},
            max_queue=1,
            compression=None,
        )
        async with websockets.connect(
            socket_url(server), additional_headers={"Cookie": alice}
        ) as sender:
            body = "x" * 3900
            total = 1500  # about 6 MB: more than the kernel buffers between us
            for n in range(total):
                await sender.send(
                    json.dumps({"body": f"{n:04d} {body}", "client_id": f"flood-{n:06d}"})
                )
            seen = []
            async with asyncio.timeout(60):
                while len(seen) < total:
                    frame = str(await sender.recv())
                    seen += re.findall(r">(\d{4}) x", frame)
            assert seen == [f"{n:04d}" for n in range(total)]  # the sender got everything, in order
        # Bob is cut off: once he reads again he finds only what was already in the kernel
        # buffers, then nothing more (the server stopped feeding him), never the whole flood.
        frames = 0
        with contextlib.suppress(TimeoutError, websockets.ConnectionClosed):
            async with asyncio.timeout(5):
                while True:
                    await stalled.recv()
                    frames += 1
        assert 0 < frames < total
        await stalled.close()
        assert "closing a socket that fell behind" in server.log_path.read_text()  # type: ignore[union-attr]
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
