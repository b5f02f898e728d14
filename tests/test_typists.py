"""Who is typing: told to the others, once per period per person, never where they may not post."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from quart import Quart
from redis import Redis

from tests.support import Inbox
from tests.test_live import signed_in_client


async def opened(client: Any) -> Any:
    ws = client.websocket("/rooms/general/ws")
    socket = await ws.__aenter__()
    async with asyncio.timeout(5):
        while 'id="online"' not in await socket.receive():
            pass
    return ws, socket


async def lines_within(socket: Any, seconds: float) -> list[str]:
    """The typing lines a socket gets within `seconds`."""
    got: list[str] = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                frame = await socket.receive()
                if 'id="typing"' in frame:
                    got.append(frame)
    except TimeoutError:
        pass
    return got


def typing(flag: str, draft: str = "draft") -> str:
    return json.dumps({"typing": flag, "body": draft, "client_id": "t", "headers": {}})


async def test_typing_is_told_once_and_never_in_a_read_only_room_by_others(
    make_app: Any, inbox: Inbox, redis_sync: Redis
) -> None:
    app: Quart = await make_app(ADMIN_EMAILS="root@example.org")
    ada = await signed_in_client(app, inbox, "ada@example.org")
    bob = await signed_in_client(app, inbox, "bob@example.org")
    root = await signed_in_client(app, inbox, "root@example.org")
    ada_ws, ada_socket = await opened(ada)
    bob_ws, bob_socket = await opened(bob)
    try:
        for n in range(10):  # a flood of frames: one line
            await ada_socket.send(typing("1", f"draft {n}"))
        lines = await lines_within(bob_socket, 1.5)
        assert lines == ['<p id="typing" hx-swap-oob="innerHTML">ada is typing…</p>']
        await ada_socket.send(typing("0", "draft 9"))
        await ada_socket.send(typing("1", "draft 9"))  # htmx's trailing frame: not news
        for n in range(10):  # starting again at once, again and again: not told again
            await ada_socket.send(typing("0", f"again {n}"))
            await ada_socket.send(typing("1", f"again {n}!"))
        lines = await lines_within(bob_socket, 1.5)
        assert lines == ['<p id="typing" hx-swap-oob="innerHTML"></p>']

        saved = await root.post("/rooms/general/rules", form={"slow": "0", "admins_only": "1"})
        assert saved.status_code == 303
        await asyncio.sleep(2.6)  # past ada's period
        await ada_socket.send(typing("1", "another draft"))
        assert not any("ada is typing" in line for line in await lines_within(bob_socket, 1.5))
        root_ws, root_socket = await opened(root)
        await root_socket.send(typing("1"))
        assert any("root is typing" in line for line in await lines_within(bob_socket, 1.5))
        await root_ws.__aexit__(None, None, None)
    finally:
        await ada_ws.__aexit__(None, None, None)
        await bob_ws.__aexit__(None, None, None)
