"""Changes that run to the end when the browser goes away.

Quart cancels a request's handler when the client disconnects, and a socket's handler when the
peer does. A change made of several Redis steps (a ban and then the end of the person's
sessions, a first sign-in's person and then its profile, a stored message and then its
mentions) would then stop half done, and most of those never heal: the next try sees the first
step done and skips the rest. So every request that may change something (any method but GET,
HEAD and OPTIONS) runs in its own task once its body has arrived, and the caller's cancellation
does not reach it; `to_the_end` does the same for one call (a socket's post, a GET that makes
a conversation). Only the answer is lost with the client.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from quart import Quart
from quart.typing import ResponseTypes
from quart.wrappers import Request

log = logging.getLogger("chat")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

T = TypeVar("T")
P = ParamSpec("P")

# Calls whose caller went away (held here: the event loop keeps only weak references to tasks).
_finishing: set[asyncio.Task[Any]] = set()


async def to_the_end(call: Coroutine[Any, Any, T]) -> T:
    """Await `call` in a task of its own that cancelling the caller does not cancel."""
    task = asyncio.ensure_future(call)
    _finishing.add(task)
    task.add_done_callback(_finishing.discard)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_log_failure)
        raise


def runs_to_the_end(function: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Awaitable[T]]:
    @functools.wraps(function)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return await to_the_end(function(*args, **kwargs))

    return wrapper


def _log_failure(task: asyncio.Task[Any]) -> None:
    """Nobody awaits the task any more: its error would otherwise go unseen."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.warning("a change whose client went away failed: %r", error)


class FinishingQuart(Quart):
    async def handle_request(self, request: Request) -> ResponseTypes:
        if request.method in SAFE_METHODS:
            return await super().handle_request(request)
        try:
            # Only a body that has arrived: a client that stops sending keeps no task alive.
            await asyncio.wait_for(request.body, timeout=request.body_timeout)
        except asyncio.CancelledError:
            raise
        except Exception:  # too large or too slow: the handler meets it and answers it
            return await super().handle_request(request)
        return await to_the_end(super().handle_request(request))
