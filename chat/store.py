"""The worker's Redis client: opened before serving, kept on app.extensions."""

from __future__ import annotations

from quart import Quart, current_app
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# What a dead or unreachable Redis raises; views turn it into a friendly 503.
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def init_app(app: Quart) -> None:
    @app.before_serving
    async def open_redis() -> None:
        app.extensions["redis"] = Redis.from_url(
            app.config["REDIS_URL"],
            decode_responses=True,
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=15,
            retry_on_timeout=True,
        )

    @app.after_serving
    async def close_redis() -> None:
        client: Redis = app.extensions.pop("redis")
        await client.aclose()


def redis(app: Quart | None = None) -> Redis:
    """This worker's shared client (a connection pool)."""
    return (app or current_app).extensions["redis"]


def secret(app: Quart | None = None) -> bytes:
    return str((app or current_app).config["SECRET_KEY"]).encode()
