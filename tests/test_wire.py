"""The live path's shortcut past Quart and hypercorn (chat/wire.py) still fits them.

If an upgrade of Quart, hypercorn or wsproto changes what the shortcut relies on, these fail
(and the app would fall back to the ordinary send path, slower, with a warning in its log).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
import uvloop
import websockets
from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart, websocket
from wsproto.frame_protocol import FrameProtocol

from chat import wire
from chat.embedded_redis import free_port
from chat.websocket_deflate import refuse_permessage_deflate


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_is_what_wsproto_would_send(size: int) -> None:
    text = ("é" * size)[:size] if size % 2 else "a" * size
    expected = FrameProtocol(client=False, extensions=[]).send_data(text, fin=True)
    assert wire.text_frame(text) == expected


def test_text_frame_counts_bytes_not_characters() -> None:
    text = "你" * 50  # 150 bytes: needs the 16-bit length
    assert wire.text_frame(text) == FrameProtocol(client=False, extensions=[]).send_data(text)


async def test_frames_written_to_the_transport_reach_the_peer_in_order() -> None:
    refuse_permessage_deflate()
    seen: dict[str, Any] = {}
    app = Quart(__name__)

    @app.websocket("/ws")
    async def socket() -> None:
        await websocket.accept()
        line = wire.line(websocket._get_current_object())  # type: ignore[attr-defined]
        seen["line"] = line
        assert line is not None
        seen["ready"] = line.ready()
        line.write(wire.text_frame("direct ✓"))
        await websocket.send("through hypercorn")
        line.write(wire.text_frame("direct again"))
        await websocket.receive()  # the client's goodbye
        await websocket.close(1000)
        seen["ready_after_close"] = line.ready()

    port = free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = config.errorlog = None
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                async with websockets.connect(
                    f"ws://127.0.0.1:{port}/ws", compression="deflate"
                ) as client:
                    assert client.protocol.extensions == []  # deflate declined: plain frames
                    received = [await asyncio.wait_for(client.recv(), 5) for _ in range(3)]
                    await client.send("bye")
                    with contextlib.suppress(websockets.ConnectionClosed):
                        await asyncio.wait_for(client.recv(), 5)
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("hypercorn did not start")
    finally:
        stop.set()
        await asyncio.wait_for(server, 10)
    assert received == ["direct ✓", "through hypercorn", "direct again"]
    assert seen["ready"] is True
    assert seen["ready_after_close"] is False


def test_an_unknown_websocket_is_refused_not_guessed() -> None:
    class Elsewhere:
        _send = None

    assert wire.line(Elsewhere()) is None


def test_the_shortcut_works_on_uvloop_too() -> None:
    """The workers run uvloop (chat/serve.py): its transports are not asyncio's classes."""
    uvloop.run(test_frames_written_to_the_transport_reach_the_peer_in_order())
