"""The worker's Redis client: opened before serving, kept on app.extensions.

The only module that knows whether CHAT_REDIS_URL names one server or a cluster
(chat/redis_target.py). Everything else names keys with their owner's hash tag ({r:<room>},
{p:<person>}, ...), so a script or a transaction touches one slot and the same code runs on
both; what differs is the client (RedisCluster routes each command to the slot's node) and
the pub/sub Topology (which node a channel lives on).
"""

from __future__ import annotations

import logging
import traceback
from typing import Any, Protocol

from quart import Quart, current_app
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ClusterError, RedisClusterException, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chat import redis_target

log = logging.getLogger("chat.store")

# Connections per worker (per node on a cluster); `?max_connections=N` in a single server's
# CHAT_REDIS_URL overrides it. Sized for a reconnect storm (bench/REPORT.md): thousands of
# handshakes at once, each a few round trips.
POOL_SIZE = 1000

# What a dead or unreachable Redis raises (a cluster also: no node serves a slot, or the
# cluster is failing over); views turn it into a friendly 503.
REDIS_DOWN = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterError,  # the cluster is down or failing over
    TryAgainError,
    RedisClusterException,  # no node reachable or a slot not served (not a ConnectionError)
    ConnectionError,
    OSError,
)

# Pub/sub connections retry nothing silently: a reconnect must be seen so sockets backfill.
_PUBSUB_OPTIONS: dict[str, Any] = {
    "decode_responses": True,
    "retry": Retry(NoBackoff(), 0),
    "socket_connect_timeout": 2,
    "health_check_interval": 10,
}


class Topology(Protocol):
    """Where pub/sub channels live (chat/bus.py keeps one connection per node named here)."""

    def owner(self, channel: str) -> str:
        """The node that serves `channel`'s hash slot."""

    def client(self, node: str) -> Redis:
        """A new client to `node`, for one pub/sub connection."""

    async def refresh(self) -> None:
        """Read the map of slots to nodes again (after a failover or a slot move)."""

    def by_slot(self, channels: list[str]) -> list[list[str]]:
        """`channels` in groups one (un)subscribe command may name together."""


class OneServer:
    def __init__(self, url: str) -> None:
        self.url = url

    def owner(self, channel: str) -> str:
        return "server"

    def client(self, node: str) -> Redis:
        return Redis.from_url(self.url, **_PUBSUB_OPTIONS)

    async def refresh(self) -> None:
        return None

    def by_slot(self, channels: list[str]) -> list[list[str]]:
        return [channels] if channels else []


class Cluster:
    def __init__(self, cluster: RedisCluster, target: redis_target.RedisTarget) -> None:
        self.cluster = cluster
        self.target = target

    def owner(self, channel: str) -> str:
        return str(self.cluster.get_node_from_key(channel).name)

    def client(self, node: str) -> Redis:
        host, _, port = node.rpartition(":")
        return Redis(
            host=host,
            port=int(port),
            username=self.target.username,
            password=self.target.password,
            ssl=self.target.tls,
            **_PUBSUB_OPTIONS,
        )

    async def refresh(self) -> None:
        await self.cluster.nodes_manager.initialize()

    def by_slot(self, channels: list[str]) -> list[list[str]]:
        return by_slot(self.cluster, channels)


class FailoverSafeCluster(RedisCluster):  # type: ignore[misc]
    """A cluster client that retries a command whose connection was closed under it.

    When a failover drops a node from the slot map, redis-py closes every connection to it,
    those in use too, and a command half way through one fails with an AttributeError or
    TypeError from inside redis-py ("'NoneType' object has no attribute 'writelines'";
    redis/redis-py#4287 is the same leak after a peer reset). That is a lost connection: it
    is raised as one, which the client retries on the new slot map (else REDIS_DOWN).
    """

    async def _execute_command(self, target_node: ClusterNode, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super()._execute_command(target_node, *args, **kwargs)
        except (AttributeError, TypeError) as error:
            if not _closed_under_the_command(error):
                raise
            raise RedisConnectionError(f"connection closed under the command: {error}") from error


def _closed_under_the_command(error: BaseException) -> bool:
    frames = traceback.extract_tb(error.__traceback__)
    where = frames[-1].filename if frames else ""
    in_redis_io = where.endswith(
        ("redis/asyncio/connection.py", "asyncio/streams.py", "asyncio/selector_events.py")
    )
    return in_redis_io and "NoneType" in str(error)


def connect(url: str) -> tuple[Any, Topology]:
    """A client (a pool) for the Redis `url` names, and its pub/sub topology."""
    target = redis_target.parse(url)
    if not target.cluster:
        # A blocking pool: a burst of connects (a reconnect storm) waits for a connection
        # instead of failing with "Too many connections" and a 503.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_SIZE,
            timeout=10,
            decode_responses=True,
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=15,
            retry_on_timeout=True,
        )
        return Redis.from_pool(pool), OneServer(url)
    cluster = FailoverSafeCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        username=target.username,
        password=target.password,
        ssl=target.tls,
        max_connections=POOL_SIZE,
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=15,
    )
    return cluster, Cluster(cluster, target)


def init_app(app: Quart) -> None:
    @app.before_serving
    async def open_redis() -> None:
        client, found = connect(app.config["REDIS_URL"])
        if isinstance(client, RedisCluster):
            try:
                await client.initialize()  # the slot map, before the first channel is routed
            except REDIS_DOWN as error:  # served anyway: pages say Redis is down until it is up
                log.warning("Redis cluster unreachable at start: %s", error)
        app.extensions["redis"] = client
        app.extensions["redis_topology"] = found

    @app.after_serving
    async def close_redis() -> None:
        client = app.extensions.pop("redis")
        app.extensions.pop("redis_topology", None)
        await client.aclose()


def redis(app: Quart | None = None) -> Any:
    """This worker's shared client (a connection pool, or a cluster client)."""
    return (app or current_app).extensions["redis"]


def topology(app: Quart | None = None) -> Topology:
    return (app or current_app).extensions["redis_topology"]  # type: ignore[no-any-return]


def is_cluster(app: Quart | None = None) -> bool:
    return isinstance(topology(app), Cluster)


async def ping(app: Quart | None = None) -> None:
    """Every node answers (REDIS_DOWN if one does not)."""
    client = redis(app)
    if isinstance(client, RedisCluster):
        await client.ping(target_nodes=RedisCluster.PRIMARIES)
    else:
        await client.ping()


def by_slot(client: Any, keys: list[str]) -> list[list[str]]:
    """`keys` in groups a single command may touch together (one group on one server)."""
    if not isinstance(client, RedisCluster):
        return [keys] if keys else []
    groups: dict[int, list[str]] = {}
    for key in keys:
        groups.setdefault(client.keyslot(key), []).append(key)
    return list(groups.values())


def secret(app: Quart | None = None) -> bytes:
    return str((app or current_app).config["SECRET_KEY"]).encode()
