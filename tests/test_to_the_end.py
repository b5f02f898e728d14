"""A change of several steps is not left half done when the browser goes away mid-request."""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Quart, request
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from chat.to_the_end import FinishingQuart


def two_step_app(app_class: type[Quart], redis_url: str, entered: asyncio.Event) -> Quart:
    """POST or GET /change writes "first", then (a moment later) "second"."""
    app = app_class(__name__)

    @app.route("/change", methods=["GET", "POST"])
    async def change() -> str:
        async with AsyncRedis.from_url(redis_url) as redis:
            await redis.set("first", request.method)
            entered.set()
            await asyncio.sleep(0.3)
            await redis.set("second", request.method)
        return "done"

    return app


async def request_and_leave(app: Quart, method: str, entered: asyncio.Event) -> None:
    """The request over ASGI, as hypercorn sends it; the client disconnects once the first
    step is done (Quart then cancels the handler)."""
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
            return {"type": "http.request", "body": body, "more_body": False}
        await entered.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        pass

    await app(scope, receive, send)  # type: ignore[arg-type]


async def both_steps(redis: Redis) -> tuple[str | None, str | None]:
    await asyncio.sleep(0.6)  # well past the second step
    return redis.get("first"), redis.get("second")


async def test_a_post_runs_to_the_end_after_the_client_left(
    redis_url: str, redis_sync: Redis
) -> None:
    entered = asyncio.Event()
    await request_and_leave(two_step_app(FinishingQuart, redis_url, entered), "POST", entered)
    assert await both_steps(redis_sync) == ("POST", "POST")


async def test_a_get_is_cancelled_with_its_client_and_plain_quart_cancels_posts(
    redis_url: str, redis_sync: Redis
) -> None:
    """Reading needs no finishing; and the test above fails without FinishingQuart."""
    entered = asyncio.Event()
    await request_and_leave(two_step_app(FinishingQuart, redis_url, entered), "GET", entered)
    assert await both_steps(redis_sync) == ("GET", None)
    entered = asyncio.Event()
    await request_and_leave(two_step_app(Quart, redis_url, entered), "POST", entered)
    assert await both_steps(redis_sync) == ("POST", None)


async def test_the_app_is_a_finishing_one(app: Quart) -> None:
    assert isinstance(app, FinishingQuart)
