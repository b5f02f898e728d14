"""The worker's Redis client: opened before serving, kept on app.extensions."""

from __future__ import annotations

from quart import Quart, current_app
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Connections per worker; `?max_connections=N` in CHAT_REDIS_URL overrides it. Sized for a
# reconnect storm (bench/REPORT.md): thousands of handshakes at once, each a few round trips.
POOL_SIZE = 1000

# What a dead or unreachable Redis raises; views turn it into a friendly 503.
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def init_app(app: Quart) -> None:
    @app.before_serving
    async def open_redis() -> None:
        # A blocking pool: a burst of connects (a reconnect storm) waits for a connection
        # instead of failing with "Too many connections" and a 503.
        pool = BlockingConnectionPool.from_url(
            app.config["REDIS_URL"],
            max_connections=POOL_SIZE,
            timeout=10,
            decode_responses=True,
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=15,
            retry_on_timeout=True,
        )
        app.extensions["redis"] = Redis.from_pool(pool)

    @app.after_serving
    async def close_redis() -> None:
        client: Redis = app.extensions.pop("redis")
        await client.aclose()


def redis(app: Quart | None = None) -> Redis:
    """This worker's shared client (a connection pool)."""
    return (app or current_app).extensions["redis"]


def secret(app: Quart | None = None) -> bytes:
    return str((app or current_app).config["SECRET_KEY"]).encode()
