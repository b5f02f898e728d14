"""A change of several steps is not left half done when the browser goes away mid-request."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from quart import Quart, request
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from chat import to_the_end
from chat.to_the_end import FinishingQuart


def two_step_app(app_class: type[Quart], redis_url: str, entered: asyncio.Event) -> Quart:
    """POST or GET /change writes "first", then (a moment later) "second"."""
    app = app_class(__name__)

    @app.route("/change", methods=["GET", "POST"])
    async def change() -> str:
        await request.form  # as every form handler does first
        async with AsyncRedis.from_url(redis_url) as redis:
            await redis.set("first", request.method)
            entered.set()
            await asyncio.sleep(0.3)
            await redis.set("second", request.method)
        return "done"

    return app


async def request_and_leave(
    app: Quart, method: str, entered: asyncio.Event, sent: list[dict[str, Any]] | None = None
) -> None:
    """The request over ASGI, as hypercorn sends it; the client disconnects once the first
    step is done (Quart then cancels the handler). With `sent`, the body's last byte never
    comes, and what the app sends back is collected there."""
    body = b"a=1" if method == "POST" else b""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": "/change",
        "raw_path": b"/change",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"localhost"),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("localhost", 80),
        "extensions": {},
    }
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": sent is not None}
        await entered.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if sent is not None:
            sent.append(message)

    await app(scope, receive, send)  # type: ignore[arg-type]


def steps(redis: Redis) -> tuple[str | None, str | None]:
    return redis.get("first"), redis.get("second")


async def wait_for_second(redis: Redis) -> None:
    async with asyncio.timeout(5):
        while redis.get("second") is None:
            await asyncio.sleep(0.02)


async def test_a_post_runs_to_the_end_after_the_client_left(
    redis_url: str, redis_sync: Redis
) -> None:
    entered = asyncio.Event()
    await request_and_leave(two_step_app(FinishingQuart, redis_url, entered), "POST", entered)
    await wait_for_second(redis_sync)
    assert steps(redis_sync) == ("POST", "POST")


async def test_a_get_is_cancelled_with_its_client_and_plain_quart_cancels_posts(
    redis_url: str, redis_sync: Redis
) -> None:
    """Reading needs no finishing; and the test above fails without FinishingQuart. (Quart
    has awaited the cancelled handler when the request returns: no later write can come.)"""
    entered = asyncio.Event()
    await request_and_leave(two_step_app(FinishingQuart, redis_url, entered), "GET", entered)
    assert steps(redis_sync) == ("GET", None)
    entered = asyncio.Event()
    await request_and_leave(two_step_app(Quart, redis_url, entered), "POST", entered)
    assert steps(redis_sync) == ("POST", None)


async def test_a_stopping_worker_lets_a_change_whose_client_left_finish(
    redis_url: str, redis_sync: Redis
) -> None:
    entered = asyncio.Event()
    app = two_step_app(FinishingQuart, redis_url, entered)
    to_the_end.init_app(app)
    await app.startup()
    await request_and_leave(app, "POST", entered)
    await app.shutdown()  # what a worker runs when it stops, before Redis closes
    assert steps(redis_sync) == ("POST", "POST")


async def test_a_body_that_stops_coming_is_answered_408_after_one_wait(redis_url: str) -> None:
    entered, sent = asyncio.Event(), []
    app = two_step_app(FinishingQuart, redis_url, entered)
    app.config["BODY_TIMEOUT"] = 1
    started = time.monotonic()
    await request_and_leave(app, "POST", entered, sent)
    assert sent[0]["status"] == 408
    assert time.monotonic() - started < 1.9  # not a second wait in the handler
    assert not entered.is_set()  # and nothing changed


async def test_the_app_is_a_finishing_one(app: Quart) -> None:
    assert isinstance(app, FinishingQuart)
