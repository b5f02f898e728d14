"""Fixtures with real parts: a Redis server process, an SMTP server, the app."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from quart.testing.app import TestApp
from quart.typing import TestClientProtocol as Client
from redis import Redis
from redis.cluster import RedisCluster as SyncRedisCluster

from app import create_app
from chat import redis_target
from chat.embedded_redis import EmbeddedRedis
from tests.redis_cluster import RedisClusterServers
from tests.support import GENEROUS_LIMITS, Inbox, SmtpServer

SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"


@pytest.fixture(autouse=True)
def own_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every app a test makes archives to a file of its own (apps read CHAT_* variables)."""
    path = tmp_path / "archive.sqlite3"
    monkeypatch.setenv("CHAT_ARCHIVE_PATH", str(path))
    # Its own consumer group too: apps and servers of a run share one Redis.
    monkeypatch.setenv("CHAT_ARCHIVE_GROUP", f"test-{path.parent.name}")
    return path


# CHAT_TEST_REDIS=cluster: the run uses a cluster of 3 primaries instead of one server
# (tests/test_cluster.py runs some test files that way).
ON_CLUSTER = os.environ.get("CHAT_TEST_REDIS") == "cluster"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis-compatible server for the whole run (or CHAT_TEST_REDIS_URL)."""
    if os.environ.get("CHAT_TEST_REDIS_URL"):
        yield os.environ["CHAT_TEST_REDIS_URL"]
        return
    if ON_CLUSTER:
        with RedisClusterServers(tmp_path_factory.mktemp("cluster")) as servers:
            yield servers.url
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False)
    url = server.start()
    yield url
    server.stop()


class WholeClusterClient(SyncRedisCluster):
    """Tests list keys with KEYS, which a cluster client sends to one node: ask them all."""

    def keys(self, pattern: Any = "*", **kwargs: Any) -> Any:
        return list(self.scan_iter(match=pattern))


def sync_client(url: str) -> Any:
    """A synchronous client for the test's own checks, for one server or a cluster."""
    target = redis_target.parse(url)
    if target.cluster:
        host, port = target.nodes[0]
        return WholeClusterClient(host=host, port=port, decode_responses=True)
    return Redis.from_url(url, decode_responses=True)


def empty(url: str) -> None:
    with sync_client(url) as client:
        if isinstance(client, SyncRedisCluster):
            client.flushdb(target_nodes=SyncRedisCluster.PRIMARIES)
        else:
            client.flushdb()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The server, emptied before each test."""
    empty(redis_server)
    return redis_server


@pytest.fixture
def redis_sync(redis_url: str) -> Iterator[Redis]:
    with sync_client(redis_url) as client:
        yield client


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def inbox(smtp_server: SmtpServer) -> Inbox:
    smtp_server.inbox.messages.clear()
    smtp_server.inbox.notices.clear()
    return smtp_server.inbox


@pytest.fixture
def settings(redis_url: str, smtp_server: SmtpServer, tmp_path: Path) -> dict[str, Any]:
    return {
        "REDIS_URL": redis_url,
        "SMTP_URL": smtp_server.url,
        "SECRET_KEY": SECRET,
        "COOKIE_SECURE": False,
        "PUBLIC_URL": "http://localhost",  # the test client's Host
        **GENEROUS_LIMITS,
    }


@pytest.fixture
async def make_app(settings: dict[str, Any]) -> AsyncIterator[Callable[..., Any]]:
    """Start apps with the test settings plus overrides; all are shut down after the test."""
    started: list[Any] = []

    async def start(**overrides: Any) -> Quart:
        app = create_app({**settings, **overrides})
        # Quart's default is 6 s for the whole shutdown: the bus reader and the mention email
        # round may each take up to 3 s to end, which a loaded 2-core CI machine overran.
        context = TestApp(app, startup_timeout=30, shutdown_timeout=30)
        await context.__aenter__()
        started.append(context)
        return app

    yield start
    for context in reversed(started):
        await context.__aexit__(None, None, None)


@pytest.fixture
async def app(make_app: Callable[..., Any]) -> Quart:
    return await make_app()  # type: ignore[no-any-return]


@pytest.fixture
def client(app: Quart) -> Client:
    return app.test_client()


async def sign_in(client: Client, inbox: Inbox, address: str) -> None:
    """The whole flow, as a person would: ask for a code, read it from the email, enter it."""
    before = len(inbox.to(address))
    response = await client.post("/login", form={"email": address})
    assert response.status_code == 200, await response.get_data(as_text=True)
    code = await inbox.wait_for_code(address, after=before)
    response = await client.post("/login/code", form={"email": address, "code": code})
    assert response.status_code == 303, await response.get_data(as_text=True)
    assert response.headers["Location"] == "/"


def text_of(html: str) -> str:
    """Visible text, roughly: tags dropped, whitespace folded."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())
