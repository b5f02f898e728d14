"""A worker's background loops: started when it serves, cancelled (and awaited) when it stops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from quart import Quart


def run_while_serving(app: Quart, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
    @app.while_serving
    async def running():  # type: ignore[no-untyped-def]
        task = asyncio.create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
