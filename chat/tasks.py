"""A worker's background loops: started when it serves, cancelled (and awaited) when it stops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from quart import Quart

# How long to wait before cancelling again. A cancellation that lands inside a redis-py call
# can come out as a connection error, which a loop that waits Redis out handles and goes on:
# the loop would then never end, and neither would the shutdown.
CANCEL_AGAIN_SECONDS = 0.5
GIVE_UP_SECONDS = 20.0


def run_while_serving(app: Quart, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
    @app.while_serving
    async def running():  # type: ignore[no-untyped-def]
        task = asyncio.create_task(loop())
        yield
        await stop(task)


async def stop(task: asyncio.Task[Any]) -> None:
    """Cancel `task` until it has ended (or, past GIVE_UP_SECONDS, say so and leave it)."""
    for _ in range(int(GIVE_UP_SECONDS / CANCEL_AGAIN_SECONDS)):
        if task.done():
            break
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_AGAIN_SECONDS)
    else:
        logging.getLogger("chat").error("a background task would not stop: %r", task)
        return
    with contextlib.suppress(asyncio.CancelledError):
        await task
