"""Where an idle room socket's memory goes: tracemalloc in the serving process.

    uv run python -m bench.idle_memory [sockets]     # default 1,000

The app runs in this process under hypercorn's `serve()` (one worker, `hypercorn.toml`) with a
real Redis and SMTP server; a child process opens the sockets for one signed-in user. The
output is the traced growth per socket, by file and by line. Python allocations only: RSS per
socket (`bench.run idle`) is higher by the allocator's own overhead.
"""

from __future__ import annotations

import asyncio
import linecache
import multiprocessing
import os
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

from chat.embedded_redis import EmbeddedRedis, free_port
from tests.support import SmtpServer

ROOT = Path(__file__).resolve().parent.parent


def open_sockets(port: int, cookie: str, count: int, ready: Any, done: Any) -> None:
    import websockets

    async def main() -> None:
        sockets = [
            await websockets.connect(
                f"ws://127.0.0.1:{port}/rooms/general/ws", additional_headers={"Cookie": cookie}
            )
            for _ in range(count)
        ]
        ready.set()
        while not done.is_set():  # noqa: ASYNC110 - a cross-process event
            await asyncio.sleep(0.2)
        for ws in sockets:
            ws.transport.abort()

    asyncio.run(main())


async def profile(count: int) -> None:
    import httpx
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    redis = EmbeddedRedis(Path(tempfile.mkdtemp()), appendonly=False)
    redis.start()
    smtp = SmtpServer()
    smtp.start()
    port = free_port()
    os.environ.update(
        CHAT_REDIS_URL=redis.url,
        CHAT_SMTP_URL=smtp.url,
        CHAT_SECRET_KEY="bench-idle-memory-" + "x" * 32,
        CHAT_COOKIE_SECURE="false",
        CHAT_WS_MAX_SOCKETS_PER_SESSION=str(count + 10),
        # One session opens every socket back to back: issue 19's reconnect guard would
        # refuse it (HTTP 429) after 30 a minute.
        CHAT_WS_HANDSHAKES_PER_MINUTE=str(count + 10),
    )
    from app import create_app

    app = create_app()
    config = Config.from_toml(str(ROOT / "hypercorn.toml"))
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))
    await asyncio.sleep(1.5)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        await client.post("/login", data={"email": "idle@bench.example.org"})
        code = await smtp.inbox.wait_for_code("idle@bench.example.org")
        await client.post("/login/code", data={"email": "idle@bench.example.org", "code": code})
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    context = multiprocessing.get_context("spawn")
    ready, done = context.Event(), context.Event()
    tracemalloc.start(8)
    before = tracemalloc.take_snapshot()
    opener = context.Process(target=open_sockets, args=(port, cookie, count, ready, done))
    opener.start()
    while not ready.is_set():  # noqa: ASYNC110 - a cross-process event
        await asyncio.sleep(0.2)
    await asyncio.sleep(3)  # joins, presence and backfill settle
    after = tracemalloc.take_snapshot()
    own = [tracemalloc.Filter(False, tracemalloc.__file__)]
    before, after = before.filter_traces(own), after.filter_traces(own)
    site = str(Path(sys.prefix) / "lib") + "/"
    by_file = after.compare_to(before, "filename")
    total = sum(stat.size_diff for stat in by_file)
    print(f"{count:,} idle sockets: {total / count:,.0f} bytes traced per socket\n")
    print("bytes/socket  blocks/socket  file")
    for stat in by_file[:15]:
        name = stat.traceback[0].filename.replace(site, "")
        print(f"{stat.size_diff / count:12,.0f}  {stat.count_diff / count:13.1f}  {name}")
    print("\nbytes/socket  line")
    for stat in after.compare_to(before, "lineno")[:20]:
        frame = stat.traceback[0]
        line = linecache.getline(frame.filename, frame.lineno).strip()[:60]
        name = frame.filename.replace(site, "")
        print(f"{stat.size_diff / count:12,.0f}  {name}:{frame.lineno}  {line}")
    done.set()
    opener.join(10)
    stop.set()
    await asyncio.wait_for(server, 15)
    smtp.stop()
    redis.stop()


if __name__ == "__main__":
    asyncio.run(profile(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
