"""A trivial broadcast server speaking the chat's websocket protocol, to calibrate the generator.

One process, one asyncio loop, no Redis, no auth: a JSON {"body", "client_id"} in, the same
kind of fragment the app pushes (id="m-<ms>-<seq>", escaped body) out to every socket of the
room via websockets.broadcast(), plus a compose frame to the sender. If the generator reaches
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

from websockets.asyncio.server import ServerConnection, broadcast, serve

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
        async with serve(handler, "127.0.0.1", port, max_queue=4096, ping_interval=None):
            await asyncio.sleep(max_seconds)

    asyncio.run(main())


@contextlib.asynccontextmanager
async def serving(max_seconds: float = 600) -> AsyncIterator[int]:
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
        yield port
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
