"""A trivial broadcast server speaking the chat's websocket protocol, to calibrate the generator.

One process on uvloop, no Redis, no auth, no compression: a JSON {"body", "client_id"} in,
the same kind of fragment the app pushes (id="m-<ms>-<seq>", escaped body) out to every
socket of the room via websockets.broadcast(), plus a compose frame to the sender. If the generator reaches
a delivery rate here well above what it measures on the app, it is not the bottleneck.

    uv run python -m bench.calibrate      # a short calibration run, prints its table
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import multiprocessing
import time
from collections.abc import AsyncIterator
from typing import Any

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

from bench.stack import proc_stat
from chat.embedded_redis import free_port

FRAGMENT = (
    '<div id="messages" hx-swap-oob="upsert"><article class="msg" id="m-{id}" data-author="x">'
    '<div class="msg-main"><p class="body">{body}</p></div></article></div>'
)
COMPOSE = '<form id="compose" hx-swap-oob="true"><input name="client_id" value="x"></form>'


def serve_forever(port: int, max_seconds: float) -> None:
    rooms: dict[str, set[ServerConnection]] = {}
    counter = [0]

    async def handler(ws: ServerConnection) -> None:
        room = ws.request.path.split("?")[0] if ws.request else "/"
        members = rooms.setdefault(room, set())
        members.add(ws)
        try:
            async for raw in ws:
                data = json.loads(raw)
                counter[0] += 1
                frame = FRAGMENT.format(
                    id=f"{int(time.time() * 1000)}-{counter[0]}", body=html.escape(data["body"])
                )
                broadcast(members, frame)
                await ws.send(COMPOSE)
        finally:
            members.discard(ws)

    async def main() -> None:
        # No permessage-deflate (the app declines it too) and uvloop (as the app's workers).
        async with serve(
            handler, "127.0.0.1", port, max_queue=4096, ping_interval=None, compression=None
        ):
            await asyncio.sleep(max_seconds)

    uvloop.run(main())


class Trivial:
    """The trivial server's process, with the same CPU accounting as the app's (stack.Server)."""

    def __init__(self, port: int, pid: int) -> None:
        self.port, self.pid = port, pid

    def usage(self) -> dict[str, Any]:
        cpu, rss = proc_stat(self.pid) or (0.0, 0)
        return {"total_cpu": cpu, "processes": {self.pid: {"cpu": cpu, "rss": rss}}}

    def worker_pids(self) -> list[int]:
        return [self.pid]


@contextlib.asynccontextmanager
async def serving(max_seconds: float = 600) -> AsyncIterator[Trivial]:
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(
        target=serve_forever, args=(port, max_seconds), daemon=True
    )
    process.start()
    try:
        for _ in range(100):  # bounded wait for the port
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        assert process.pid is not None
        yield Trivial(port, process.pid)
    finally:
        process.terminate()
        process.join(5)
        if process.is_alive():
            process.kill()


def main(argv: Any = None) -> None:
    from bench import run

    run.main(["calibrate"])


if __name__ == "__main__":
    main()
