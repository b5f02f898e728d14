"""The chat on a Redis (Valkey) cluster: two app processes, rooms on every node, and the
cluster changing under them (a pub/sub connection killed, a slot moved, failovers, a node
paused) with every acknowledged message delivered once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.crc import key_slot

import chat
from chat import history, keys, store
from tests.redis_cluster import ClusterNode, RedisClusterServers
from tests.servers import AppServer
from tests.support import Inbox, SmtpServer
from tests.test_server import server_settings, sign_in_http, socket_url, wait_for_text

pytestmark = pytest.mark.slow

MESSAGE = re.compile(r'id="m-(\d+-\d+)"')


@contextlib.contextmanager
def running_cluster(path: Path, replicas: int = 0) -> Iterator[RedisClusterServers]:
    servers = RedisClusterServers(path / "cluster", primaries=3, replicas=replicas)
    servers.start()
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisClusterServers]:
    with running_cluster(tmp_path) as servers:
        yield servers


@pytest.fixture
def cluster_with_replicas(tmp_path: Path) -> Iterator[RedisClusterServers]:
    with running_cluster(tmp_path, replicas=1) as servers:
        yield servers


@contextlib.asynccontextmanager
async def two_apps(
    servers: RedisClusterServers, smtp: SmtpServer, tmp_path: Path
) -> AsyncIterator[tuple[AppServer, AppServer]]:
    """Two app processes (one worker each) on the cluster, each with its own archive."""
    apps = [
        AppServer(
            server_settings(servers.url, smtp, WS_MESSAGES_PER_SECOND=100, WS_BURST=100),
            log_path=tmp_path / f"app-{n}.log",
        )
        for n in (1, 2)
    ]
    try:
        for app in apps:
            await asyncio.to_thread(app.start, 30)
        yield apps[0], apps[1]
    finally:
        for app in apps:
            await asyncio.to_thread(app.stop)


def cluster_client(servers: RedisClusterServers) -> SyncRedisCluster:
    port = servers.primaries()[0].port
    return SyncRedisCluster(host="127.0.0.1", port=port, decode_responses=True)


def stream_of(servers: RedisClusterServers, slug: str) -> list[str]:
    client = cluster_client(servers)
    try:
        return [entry_id for entry_id, _ in client.xrange(history.stream_key(slug))]
    finally:
        client.close()


def room_slot(slug: str) -> int:
    return key_slot(history.stream_key(slug).encode())


async def rooms_on_every_node(
    servers: RedisClusterServers, app: AppServer, cookie: str
) -> dict[int, str]:
    """An open room whose keys live on each primary (by port), made through the app."""
    found: dict[int, str] = {}
    primaries = servers.primaries()
    async with httpx.AsyncClient(base_url=app.url, headers={"Cookie": cookie}) as client:
        for n in range(200):
            slug = f"room-{n}"
            owner = servers.owner_of_slot(room_slot(slug))
            if owner.port in found:
                continue
            made = await client.post("/rooms", data={"name": f"room {n}"})
            assert made.status_code == 303, made.text
            found[owner.port] = slug
            if len(found) == len(primaries):
                return found
    raise AssertionError("no room name for some node")


async def open_socket(app: AppServer, cookie: str, slug: str) -> Any:
    ws = await websockets.connect(socket_url(app, slug), additional_headers={"Cookie": cookie})
    await wait_for_text(ws, 'id="online"')
    return ws


async def say(ws: Any, body: str, client_id: str) -> None:
    await ws.send(
        json.dumps({"body": body, "client_id": client_id, "headers": {"HX-Request": "true"}})
    )


class Recorder:
    """What each socket received (message ids, in order) and what the sender was told."""

    def __init__(self, sockets: dict[str, Any], sender: str) -> None:
        self.sockets = sockets
        self.sender = sender
        self.received: dict[str, list[str]] = {name: [] for name in sockets}
        self.acked = 0
        self.refused = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Recorder:
        self._tasks = [asyncio.create_task(self._read(name)) for name in self.sockets]
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _read(self, name: str) -> None:
        ws = self.sockets[name]
        while not self._stop.is_set():
            try:
                async with asyncio.timeout(0.2):
                    frame = await ws.recv()
            except TimeoutError:
                continue
            self.received[name] += MESSAGE.findall(frame)
            if name == self.sender:
                if 'id="compose"' in frame and "Not delivered" not in frame:
                    self.acked += 1
                elif "Not delivered" in frame:
                    self.refused += 1

    def check(self, stored: list[str]) -> None:
        """Every stored message reached every socket once, in order; only acked ones stored."""
        assert self.acked == len(stored), (self.acked, len(stored), self.refused)
        for name, got in self.received.items():
            assert got == stored, name


async def chat_through(
    servers: RedisClusterServers,
    sender: Any,
    recorder: Recorder,
    slug: str,
    count: int,
    events: dict[int, Callable[[], Any]],
    prefix: str,
) -> list[str]:
    """Send `count` messages 50 ms apart, running events[n] (in a thread) before message n;
    then the stored ids once every socket has had time to catch up."""
    for n in range(count):
        if n in events:
            await asyncio.to_thread(events[n])
        await say(sender, f"{prefix} {n}", client_id=f"{prefix}-{n:04d}")
        await asyncio.sleep(0.05)
    stored = await asyncio.to_thread(stream_of, servers, slug)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if recorder.acked >= len(stored) and all(
            len(got) >= len(stored) for got in recorder.received.values()
        ):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # anything doubled would arrive now
    return stored


async def alice_and_bob_in_a_room(
    servers: RedisClusterServers, one: AppServer, two: AppServer, inbox: Inbox
) -> tuple[str, dict[str, Any], str, str]:
    """A room (on the first node that got one), Alice's socket on one app and Bob's on the
    other; and their cookies."""
    alice = await sign_in_http(one.url, inbox, "alice@example.org")
    bob = await sign_in_http(two.url, inbox, "bob@example.org")
    slug = next(iter((await rooms_on_every_node(servers, one, alice)).values()))
    sockets = {"alice": await open_socket(one, alice, slug)}
    sockets["bob"] = await open_socket(two, bob, slug)
    return slug, sockets, alice, bob


async def chat_and_check(
    servers: RedisClusterServers,
    sockets: dict[str, Any],
    slug: str,
    count: int,
    events: dict[int, Callable[[], Any]],
    prefix: str,
) -> tuple[list[str], Recorder]:
    """Alice chats through the events; every socket got every stored message once, in order,
    and only acknowledged ones were stored. The sockets are closed after."""
    try:
        async with Recorder(sockets, "alice") as recorder:
            stored = await chat_through(
                servers, sockets["alice"], recorder, slug, count, events, prefix
            )
        recorder.check(stored)
    finally:
        for ws in sockets.values():
            await ws.close()
    return stored, recorder


async def test_two_apps_chat_in_rooms_on_every_node(
    cluster: RedisClusterServers, smtp_server: SmtpServer, inbox: Inbox, tmp_path: Path
) -> None:
    async with two_apps(cluster, smtp_server, tmp_path) as (one, two):
        alice = await sign_in_http(one.url, inbox, "alice@example.org")
        bob = await sign_in_http(two.url, inbox, "bob@example.org")
        rooms = await rooms_on_every_node(cluster, one, alice)
        assert len(rooms) == 3
        for port, slug in rooms.items():
            a = await open_socket(one, alice, slug)
            b = await open_socket(two, bob, slug)
            try:
                await wait_for_text(a, "bob")  # presence crosses processes
                await say(a, f"hello from one in {slug}", f"hello-{port}-1")
                frame = await wait_for_text(b, f"hello from one in {slug}")
                await say(b, f"hello from two in {slug}", f"hello-{port}-2")
                await wait_for_text(a, f"hello from two in {slug}")
                await say(a, f"hello from one in {slug}", f"hello-{port}-1")  # a resend
                last = MESSAGE.findall(frame)[-1]
            finally:
                await a.close()
                await b.close()
            stored = await asyncio.to_thread(stream_of, cluster, slug)
            assert len(stored) == 2, slug  # the resent client id was stored once
            # Backfill: a socket that last saw the first message gets the second, only.
            c = await websockets.connect(
                socket_url(two, slug) + f"?after={last}", additional_headers={"Cookie": bob}
            )
            try:
                frame = await wait_for_text(c, f"hello from two in {slug}")
                assert f"hello from one in {slug}" not in frame
            finally:
                await c.close()
            async with httpx.AsyncClient(base_url=two.url, headers={"Cookie": bob}) as client:
                page = await client.get(f"/rooms/{slug}")
            assert page.status_code == 200
            assert f"hello from one in {slug}" in page.text  # history from the other process
        assert {cluster.owner_of_slot(room_slot(slug)).port for slug in rooms.values()} == {
            node.port for node in cluster.primaries()
        }


async def test_pubsub_connections_killed_on_a_node_come_back_and_clients_catch_up(
    cluster: RedisClusterServers, smtp_server: SmtpServer, inbox: Inbox, tmp_path: Path
) -> None:
    async with two_apps(cluster, smtp_server, tmp_path) as (one, two):
        slug, sockets, _, _ = await alice_and_bob_in_a_room(cluster, one, two, inbox)
        node = cluster.owner_of_slot(room_slot(slug))

        def kill_pubsub() -> None:
            with node.client() as client:
                assert client.client_kill_filter(_type="pubsub") >= 2  # one per app

        stored, _ = await chat_and_check(cluster, sockets, slug, 30, {10: kill_pubsub}, "kill")
        assert len(stored) == 30  # the node never went away: nothing refused
        assert "pub/sub connection to" in (tmp_path / "app-2.log").read_text()


def _node_without(servers: RedisClusterServers, slots: set[int]) -> ClusterNode | None:
    owners = {servers.owner_of_slot(slot).port for slot in slots}
    return next((n for n in servers.primaries() if n.port not in owners), None)


async def test_a_slot_moved_under_a_live_room_loses_and_doubles_nothing(
    cluster: RedisClusterServers, smtp_server: SmtpServer, inbox: Inbox, tmp_path: Path
) -> None:
    async with two_apps(cluster, smtp_server, tmp_path) as (one, two):
        slug, sockets, alice, bob = await alice_and_bob_in_a_room(cluster, one, two, inbox)
        slot = room_slot(slug)
        source = cluster.owner_of_slot(slot)
        target = next(node for node in cluster.primaries() if node.port != source.port)
        moved: list[int] = []
        mover = threading.Thread(target=lambda: moved.append(cluster.move_slot(slot, target)))
        stored, _ = await chat_and_check(cluster, sockets, slug, 40, {10: mover.start}, "move")
        mover.join()
        assert moved and moved[0] >= 3  # the stream, its counter, its versions at least
        assert cluster.owner_of_slot(slot).port == target.port
        assert len(stored) >= 35  # a send that met the migration half way may be refused
        for log in ("app-1.log", "app-2.log"):  # the server told each app; it moved on
            assert f"{keys.room(slug, 'live')} unsubscribed by" in (tmp_path / log).read_text()
        # After the move, the room works as before from both processes.
        a, b = await open_socket(one, alice, slug), await open_socket(two, bob, slug)
        try:
            await say(b, "after the move", "after-move-1")
            await wait_for_text(a, "after the move")
        finally:
            await a.close()
            await b.close()


async def test_failovers_manual_and_by_a_killed_primary_lose_and_double_nothing(
    cluster_with_replicas: RedisClusterServers,
    smtp_server: SmtpServer,
    inbox: Inbox,
    tmp_path: Path,
) -> None:
    servers = cluster_with_replicas
    async with two_apps(servers, smtp_server, tmp_path) as (one, two):
        slug, sockets, _, bob = await alice_and_bob_in_a_room(servers, one, two, inbox)
        slot = room_slot(slug)
        first = servers.owner_of_slot(slot)
        replica = servers.replica_of(first)
        assert replica is not None
        sockets["bob on one"] = await open_socket(one, bob, slug)

        def manual_failover() -> None:
            servers.failover(replica)

        def kill_the_new_primary() -> None:
            servers.kill(servers.owner_of_slot(slot))

        def wait_for_promotion() -> None:
            servers.wait_until_ok(timeout=30)

        stored, recorder = await chat_and_check(
            servers,
            sockets,
            slug,
            100,
            {20: manual_failover, 40: kill_the_new_primary, 80: wait_for_promotion},
            "failover",
        )
        assert servers.owner_of_slot(slot).port == first.port  # the old primary took over again
        assert len(stored) >= 60  # refused only while no primary served the slot
        assert recorder.refused == 100 - len(stored)  # every send was answered one way or other


async def test_a_paused_node_does_not_hold_up_rooms_on_the_others(
    cluster: RedisClusterServers, smtp_server: SmtpServer, inbox: Inbox, tmp_path: Path
) -> None:
    async with two_apps(cluster, smtp_server, tmp_path) as (one, two):
        people = {}
        for n in range(12):
            app = one if n % 2 == 0 else two
            people[n] = (app, await sign_in_http(app.url, inbox, f"p{n}@example.org"))
        rooms = await rooms_on_every_node(cluster, one, people[0][1])
        slots = await asyncio.to_thread(person_slots, cluster)
        sender = reader = paused = slug = None
        for room in rooms.values():
            for s in range(0, 12, 2):
                for r in range(1, 12, 2):
                    used = {
                        key_slot(b"rooms"),  # an open room's name, read at every post
                        room_slot(room),
                        *slots[f"p{s}@example.org"],
                        *slots[f"p{r}@example.org"],
                    }
                    node = _node_without(cluster, used)
                    if node is not None and sender is None:
                        sender, reader, paused, slug = s, r, node, room
        assert sender is not None and reader is not None and paused is not None and slug
        a = await open_socket(people[sender][0], people[sender][1], slug)
        b = await open_socket(people[reader][0], people[reader][1], slug)
        try:
            # The room's first message lists its stream for the archives (a global key,
            # which may live on the paused node): sent before the pause.
            await say(a, "before the pause", "paused-first")
            await wait_for_text(b, "before the pause")
            cluster.pause(paused)
            try:
                for n in range(10):
                    started = time.monotonic()
                    await say(a, f"while paused {n}", f"paused-{n:03d}")
                    await wait_for_text(b, f"while paused {n}", timeout=5)
                    assert time.monotonic() - started < 0.5, n
            finally:
                cluster.resume(paused)
        finally:
            await a.close()
            await b.close()


def person_slots(servers: RedisClusterServers) -> dict[str, set[int]]:
    """Each signed-in address's session and person key slots."""
    client = cluster_client(servers)
    found: dict[str, set[int]] = {}
    try:
        for key in client.scan_iter(match="session:*"):
            record = client.hgetall(key)
            person_key = f"{{p:{record['person']}}}:profile"
            found.setdefault(record["email"], set()).update(
                {key_slot(key.encode()), key_slot(person_key.encode())}
            )
    finally:
        client.close()
    return found


# Test files that, between them, run every Lua script of chat/ (checked below).
FILES_FOR_THE_SCRIPTS = [
    "tests/test_changes.py",
    "tests/test_typists.py",
    "tests/test_hooks.py",
    "tests/test_profiles.py",
    "tests/test_conversations.py",
]
MENTION_EMAIL_TEST = (
    "tests/test_mention_mail.py::test_a_missed_mention_sends_exactly_one_email_after_the_delay"
)


def lua_scripts() -> dict[str, str]:
    """Every script the app runs (module-level `_NAME` strings that call Redis; the public
    ones are pieces other scripts are built from)."""
    found = {}
    for module in pkgutil.iter_modules(chat.__path__):
        loaded = importlib.import_module(f"chat.{module.name}")
        for name, value in vars(loaded).items():
            if name.startswith("_") and isinstance(value, str) and "redis.call(" in value:
                found[f"{module.name}.{name}"] = value
    return found


async def test_connections_closed_under_commands_fail_only_as_connection_errors(
    cluster: RedisClusterServers,
) -> None:
    """What redis-py does to a node dropped in a failover (close all its connections, in use
    too), over and over while commands run: each command succeeds or fails as a lost
    connection (REDIS_DOWN, a clear 503), never as an AttributeError from inside redis-py."""
    client, _ = store.connect(cluster.url)
    await client.initialize()
    node = client.get_node_from_key("k")
    outcomes: dict[str, int] = {}
    stopping = asyncio.Event()

    async def command() -> None:
        while not stopping.is_set():
            try:
                await client.eval("return 1", 1, "k")
                outcome = "ok"
            except store.REDIS_DOWN:
                outcome = "redis down"
            except Exception as error:  # what must not happen: recorded, to be shown
                outcome = f"{type(error).__name__}: {error}"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

    async def close_the_nodes_connections() -> None:
        while not stopping.is_set():
            await node.disconnect()
            await asyncio.sleep(0.001)

    tasks = [asyncio.create_task(command()) for _ in range(50)]
    tasks.append(asyncio.create_task(close_the_nodes_connections()))
    await asyncio.sleep(2)
    stopping.set()
    await asyncio.gather(*tasks)
    await client.aclose()
    assert set(outcomes) <= {"ok", "redis down"}, outcomes
    assert outcomes.get("ok", 0) > 0


@pytest.mark.timeout(600)
def test_every_lua_script_runs_on_a_cluster(cluster: RedisClusterServers) -> None:
    """Those test files, run against the cluster, pass; and each script is in some node's
    script cache afterwards, so each ran there without a cross-slot error."""
    scripts = lua_scripts()
    assert len(scripts) >= 20
    before = {
        node.port: node.client().script_exists(*(sha1(s) for s in scripts.values()))
        for node in cluster.primaries()
    }
    assert not any(any(found) for found in before.values())
    runs = [
        ["-m", "not slow and not e2e", *FILES_FOR_THE_SCRIPTS],
        ["-m", "not e2e", MENTION_EMAIL_TEST],  # a slow one: the email job's scripts
    ]
    for selection in runs:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *selection],
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, "CHAT_TEST_REDIS_URL": cluster.url},
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    ran: set[str] = set()
    for node in cluster.primaries():
        with node.client() as client:
            cached = client.script_exists(*(sha1(s) for s in scripts.values()))
        ran |= {name for name, hit in zip(scripts, cached, strict=True) if hit}
    assert set(scripts) - ran == set()


def sha1(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()  # how Redis names a cached script
