"""Changes that run to the end when the browser goes away.

Quart cancels a request's handler when the client disconnects, and a socket's handler when the
peer does. A change made of several Redis steps (a ban and then the end of the person's
sessions, a first sign-in's person and then its profile, a stored message and then its
mentions) would then stop half done, and most of those never heal: the next try sees the first
step done and skips the rest. So every request that may change something (any method but GET,
HEAD and OPTIONS) runs in its own task once its body has arrived, and the caller's cancellation
does not reach it; `to_the_end` does the same for one call (a socket's post, the GET that
starts a direct conversation). Only the answer is lost with the client.

A detached change does no more than a patient client would get done, and its body has arrived
before it detaches, so a client that stops sending keeps nothing alive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from quart import Quart
from quart.typing import ResponseTypes
from quart.wrappers import Request

log = logging.getLogger("chat.to_the_end")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# At shutdown, how long changes whose client left may still take (the supervisor allows the
# graceful timeout plus 2 s before it kills a worker).
SHUTDOWN_WAIT_SECONDS = 1.5

T = TypeVar("T")

# Every call under way (the event loop keeps only weak references to tasks; and the shutdown
# waits for these).
_running: set[asyncio.Task[Any]] = set()


async def to_the_end(call: Coroutine[Any, Any, T]) -> T:
    """Await `call` in a task of its own that cancelling the caller does not cancel."""
    if asyncio.current_task() in _running:  # already detached (a form post): no second task
        return await call
    task = asyncio.ensure_future(call)
    _running.add(task)
    task.add_done_callback(_running.discard)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_log_failure)
        raise


def _log_failure(task: asyncio.Task[Any]) -> None:
    """Nobody awaits the task any more: its end would otherwise go unseen."""
    if task.cancelled():
        log.warning("a change whose client went away was cut off (the worker stopped)")
    elif (error := task.exception()) is not None:
        log.warning("a change whose client went away failed", exc_info=error)


class FinishingQuart(Quart):
    async def handle_request(self, request: Request) -> ResponseTypes:
        if request.method in SAFE_METHODS:
            return await super().handle_request(request)
        try:
            await asyncio.wait_for(request.body, timeout=request.body_timeout)
        except TimeoutError:
            request.body_timeout = 0  # the handler answers 408 at once, not after a second wait
            return await super().handle_request(request)
        except Exception:  # too large: the handler meets the same error and answers 413
            return await super().handle_request(request)
        return await to_the_end(super().handle_request(request))


def init_app(app: Quart) -> None:
    async def let_changes_finish() -> None:
        if _running:
            await asyncio.wait(set(_running), timeout=SHUTDOWN_WAIT_SECONDS)
        if _running:
            log.warning("stopping with %d changes still under way", len(_running))

    # Before Redis closes (chat/store.py) and the bus stops (chat/bus.py, also inserted first).
    app.after_serving_funcs.insert(0, let_changes_finish)
