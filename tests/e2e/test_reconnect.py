"""Missed messages come back after the socket drops: each exactly once, in order.

hx-ws closes its socket while the tab is hidden and reconnects when it is visible again; a
crashed server drops it too (close 1006), a stopping one closes it with 1012, and hx-ws
retries with backoff either way. On every reconnect
the server sends the backfill, and the upsert swap keyed by message id forbids duplicates.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from playwright.async_api import Page

from tests.e2e.people import Cast, expect
from tests.e2e.processes import crash
from tests.servers import AppServer

pytestmark = pytest.mark.e2e


async def set_tab_hidden(page: Page, hidden: bool) -> None:
    """What switching tabs does (headless Chromium never hides a page by itself)."""
    await page.evaluate(
        """hidden => {
            Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
            Object.defineProperty(document, "visibilityState",
                {configurable: true, get: () => (hidden ? "hidden" : "visible")});
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


@pytest.fixture
async def second_server(e2e_settings: dict[str, Any], cast: Cast) -> AsyncIterator[AppServer]:
    """Another app process on the same Redis, as a second worker or host would be."""
    server = AppServer(e2e_settings)
    await asyncio.to_thread(server.start)
    yield server
    await cast.close()
    await asyncio.to_thread(crash, server)  # server.stop() waits out a 5 s graceful timeout


async def test_hidden_tab_catches_up_when_visible_again(cast: Cast) -> None:
    ada, bob = await cast.ada_and_bob_in_general()
    await ada.send("one")
    await bob.sees("one")

    await set_tab_hidden(bob.page, True)
    # Bob's only socket closed, so the server tells the room he left.
    await expect(ada.online.get_by_text("bob", exact=True)).to_have_count(0)
    await ada.send("two")
    await ada.send("three")
    await asyncio.sleep(0.3)
    assert await bob.bodies() == ["one"]

    await set_tab_hidden(bob.page, False)
    await bob.sees("one", "two", "three")
    await expect(ada.online.get_by_text("bob", exact=True)).to_be_visible()
    await ada.send("four")
    await bob.sees("one", "two", "three", "four")
    await bob.send("back")
    await ada.sees("one", "two", "three", "four", "back")


def stop_gracefully(server: AppServer) -> None:
    """SIGTERM: the server closes its sockets with 1012 and exits."""
    assert server.stop() == 0


@pytest.mark.parametrize(("stop", "close_code"), [(crash, 1006), (stop_gracefully, 1012)])
async def test_a_stopped_server_is_caught_up_after_its_restart(
    cast: Cast, second_server: AppServer, stop: Callable[[AppServer], None], close_code: int
) -> None:
    ada, bob = await cast.ada_and_bob_in_general(bob_url=second_server.url)
    await bob.page.evaluate(
        """() => {
            window.closeCodes = [];
            document.addEventListener("htmx:ws:close", e => window.closeCodes.push(e.detail.code));
        }"""
    )
    await ada.send("one")
    await bob.sees("one")  # from server to server through Redis

    # While Bob's server is down, his browser's reconnect attempts fail, as they should.
    cast.expect_console(rf"WebSocket connection to 'ws://127\.0\.0\.1:{second_server.port}/")
    cast.expect_console(r"^htmx: htmx:ws:error: ")
    await asyncio.to_thread(stop, second_server)
    await ada.send("two")
    await ada.send("three")
    assert await bob.bodies() == ["one"]
    await bob.page.wait_for_function("window.closeCodes.length > 0")
    assert (await bob.page.evaluate("window.closeCodes"))[0] == close_code

    await asyncio.to_thread(second_server.start)
    # hx-ws backs off 0.5 s, 1 s, 2 s, 4 s (+-30 %) between attempts.
    await expect(bob.messages.locator(".body")).to_have_text(
        ["one", "two", "three"], timeout=20_000
    )
    await bob.wait_until_live()
    await ada.send("four")
    await bob.sees("one", "two", "three", "four")
    await bob.send("back")
    await ada.sees("one", "two", "three", "four", "back")
    assert re.search(r"/rooms/general$", bob.page.url)
