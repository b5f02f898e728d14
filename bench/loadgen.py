"""The load generator's parent: stack, real sign-in, rooms, client processes, measurements."""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets

from bench import calibrate, clients, flame
from bench.stack import Server, Smtp, Valkey, ValkeyCluster, raise_nofile, server_settings
from chat.history import stream_key

SOURCE_IPS = [f"127.0.0.{n}" for n in range(2, 10)]  # 8 x 28k ephemeral ports
# After the last step, wait up to this long (until 5 s pass with nothing received) so that
# an overloaded server can work off its backlog: what is still missing then is lost.
DRAIN_SECONDS = 60


@dataclass
class Cell:
    """One load configuration: N clients over M rooms on W workers."""

    clients: int
    rooms: int
    workers: int
    rates: list[float] = field(default_factory=lambda: [10.0])  # offered msgs/s, per step
    step_seconds: float = 6.0
    senders_per_room: int = 2
    sockets_per_user: int = 50
    processes: int = 2
    compression: bool = True
    pad: int = 40
    max_seconds: float = 300.0
    profile_step: int | None = None  # py-spy a worker during this step
    # Every user opens every room's page once first, so each socket's sidebar lists them all
    # and carries live unread counts for the rooms it is not viewing.
    join_all_rooms: bool = False
    # Issue 14's extra traffic: this share of sockets sends a typing frame every 3 s, and
    # reactions are pressed at this rate in all (per generator process: divided).
    typing_share: float = 0.0
    reactions_per_s: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    cluster: bool = False  # Redis as a cluster of 3 primaries (issue 16) instead of one server

    @property
    def name(self) -> str:
        return f"N{self.clients}-M{self.rooms}-W{self.workers}" + (
            "-cluster" if self.cluster else ""
        )


# -- sign-in and rooms, through the real HTTP flow ------------------------------------------
# Users are spread over both languages and three time zones, so every room's sockets on a
# worker ask for up to six different copies of each message (chat/localize.py).
LANGUAGES = ("en", "zh_Hans")
TIME_ZONES = ("UTC", "Asia/Shanghai", "America/New_York")


async def sign_in(client: httpx.AsyncClient, smtp: Smtp, address: str, n: int = 0) -> str:
    response = await client.post("/login", data={"email": address})
    response.raise_for_status()
    code = await smtp.inbox.wait_for_code(address)
    response = await client.post("/login/code", data={"email": address, "code": code})
    if response.status_code != 303:
        raise RuntimeError(f"sign-in of {address} failed: {response.status_code}")
    choice = {"locale": LANGUAGES[n % 2], "time_zone": TIME_ZONES[n % 3]}
    response = await client.post("/settings", data=choice)
    if response.status_code != 303:
        raise RuntimeError(f"settings of {address} not saved: {response.status_code}")
    return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


async def sign_in_many(base: str, smtp: Smtp, count: int, concurrency: int = 8) -> list[str]:
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> str:
        async with gate, httpx.AsyncClient(base_url=base, timeout=30) as client:
            return await sign_in(client, smtp, f"user{n}@bench.example.org", n)

    return list(await asyncio.gather(*(one(n) for n in range(count))))


async def create_rooms(base: str, cookie: str, count: int) -> list[str]:
    """'general' plus rooms made through POST /rooms."""
    slugs = ["general"]
    async with httpx.AsyncClient(base_url=base, headers={"Cookie": cookie}, timeout=30) as client:
        for n in range(1, count):
            response = await client.post("/rooms", data={"name": f"bench {n}"})
            if response.status_code != 303:
                raise RuntimeError(f"room not created: {response.status_code}")
            slugs.append(response.headers["location"].rstrip("/").rsplit("/", 1)[1])
    return slugs


async def join_rooms(
    base: str, cookies: list[str], rooms: list[str], concurrency: int = 16
) -> None:
    """Each user opens each room's page once, as a person clicking through would."""
    gate = asyncio.Semaphore(concurrency)

    async def one(cookie: str) -> None:
        async with (
            gate,
            httpx.AsyncClient(base_url=base, headers={"Cookie": cookie}, timeout=30) as client,
        ):
            for slug in rooms:
                response = await client.get(f"/rooms/{slug}")
                response.raise_for_status()

    await asyncio.gather(*(one(cookie) for cookie in cookies))


def plan(cell: Cell, cookies: list[str], rooms: list[str]) -> list[list[dict[str, Any]]]:
    """Sockets round-robin over rooms; users fill up to sockets_per_user; split over processes."""
    sockets: list[dict[str, Any]] = []
    senders_seen: Counter[str] = Counter()
    sender_number = 0
    for n in range(cell.clients):
        # A user's sockets are tabs of one room when every user is in every room: a person
        # viewing a room in one tab would otherwise silence its count in their other tabs.
        spread = n // cell.sockets_per_user if cell.join_all_rooms else n
        room = rooms[spread % len(rooms)]
        sender = -1
        if senders_seen[room] < cell.senders_per_room:
            senders_seen[room] += 1
            sender = sender_number
            sender_number += 1
        sockets.append(
            {
                "index": n,
                "room": room,
                "cookie": cookies[(n // cell.sockets_per_user) % len(cookies)],
                "sender": sender,
                "local_ip": SOURCE_IPS[n % len(SOURCE_IPS)],
            }
        )
    return [sockets[p :: cell.processes] for p in range(cell.processes)]


# -- client processes ------------------------------------------------------------------------
class Pool:
    def __init__(self, ws_base: str, shares: list[list[dict[str, Any]]], **spec: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes = []
        self.processes = []
        for share in shares:
            parent, child = context.Pipe()
            process = context.Process(
                target=clients.run,
                args=({"ws_base": ws_base, "sockets": share, **spec}, child),
                daemon=True,
            )
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    async def receive(self, timeout: float) -> list[dict[str, Any]]:
        async def one(pipe: Any) -> dict[str, Any]:
            if not await asyncio.to_thread(pipe.poll, timeout):
                raise TimeoutError("a client process did not answer")
            kind, payload = pipe.recv()
            if kind == "error":
                raise RuntimeError(f"client process failed: {payload}")
            return payload  # type: ignore[no-any-return]

        return list(await asyncio.gather(*(one(p) for p in self.pipes)))

    def send(self, kind: str, arg: Any = None) -> None:
        for pipe in self.pipes:
            pipe.send((kind, arg))

    def stop(self) -> None:
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)


@contextlib.asynccontextmanager
async def stack(
    workers: int,
    work: Path,
    pool_size: int | None = None,
    cluster: bool = False,
    **overrides: Any,
) -> AsyncIterator[tuple[Server, Valkey, Smtp]]:
    raise_nofile()
    valkey: Any = ValkeyCluster(work / "redis") if cluster else Valkey(work / "redis")
    smtp = Smtp()
    server: Server | None = None
    try:
        await asyncio.to_thread(valkey.start)
        smtp.start()
        server = Server(
            server_settings(
                valkey.url + (f"?max_connections={pool_size}" if pool_size else ""),
                smtp.url,
                **overrides,
            ),
            workers,
            work / "server.log",
        )
        await asyncio.to_thread(server.start)
        yield server, valkey, smtp
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)
        smtp.stop()
        await asyncio.to_thread(valkey.stop)


def merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {
        "received": Counter(),
        "dups": Counter(),
        "out_of_order": Counter(),
        "sent": Counter(),
        "hist": {},
        "timeline": Counter(),
        "errors": Counter(),
        "closes": Counter(),
        "reactions": Counter(),
    }
    for report in reports:
        for key in ("received", "dups", "out_of_order", "sent"):
            for room, step, n in report[key]:
                merged[key][(room, step)] += n
        for step, hist in report["hist"].items():
            into = merged["hist"].setdefault(int(step), [0] * clients.HIST_BUCKETS)
            for i, n in enumerate(hist):
                into[i] += n
        for k, v in report["timeline"].items():
            merged["timeline"][int(k)] += v
        merged["errors"].update(report["errors"])
        merged["closes"].update(report["closes"])
        merged["reactions"].update(report.get("reactions", {}))
    for key in ("acks", "reconnects", "connect_failures", "connected", "cpu_seconds", "missed"):
        merged[key] = sum(r[key] for r in reports)
    merged["done_seconds"] = sorted(x for r in reports for x in r["done_seconds"])
    merged["connect_seconds"] = sorted(x for r in reports for x in r["connect_seconds"])
    return merged


def percentile(hist: list[int], q: float) -> float | None:
    total = sum(hist)
    if not total:
        return None
    rank = q * total
    running = 0
    for i, n in enumerate(hist):
        running += n
        if running >= rank:
            return clients.bucket_value(i)
    return clients.bucket_value(len(hist) - 1)


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]


def py_spy(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy")
    if exe is None:
        return None
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def top_frames(raw: Path, limit: int = 15) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    if not raw.exists():
        return {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [
            f.split(" (", 1)[0] + " " + f.rsplit("/", 1)[-1].rstrip(")")
            for f in stack.split(";")
            if f
        ]
        if frames:
            own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return {
        "samples": total,
        "self": [[f, round(n / total, 4)] for f, n in own.most_common(limit)] if total else [],
        "inclusive": [[f, round(n / total, 4)] for f, n in inclusive.most_common(limit * 2)]
        if total
        else [],
    }


# -- the fan-out load run -------------------------------------------------------------------
async def run_load(cell: Cell, work: Path, target: str = "app") -> dict[str, Any]:
    """Connect cell.clients sockets, offer each rate for step_seconds, measure every delivery."""
    work.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before any load
    started = time.monotonic()
    if target == "echo":
        async with calibrate.serving() as trivial:
            rooms = [f"room{n}" for n in range(cell.rooms)]
            cookies = ["none=1"]
            return await _drive(
                cell, f"ws://127.0.0.1:{trivial.port}", rooms, cookies, trivial, None, work, started
            )
    async with stack(cell.workers, work, cluster=cell.cluster, **cell.settings) as (
        server,
        valkey,
        smtp,
    ):
        users = max(1, -(-cell.clients // cell.sockets_per_user))
        cookies = await sign_in_many(server.url, smtp, users)
        rooms = await create_rooms(server.url, cookies[0], cell.rooms)
        if cell.join_all_rooms:
            await join_rooms(server.url, cookies, rooms)
        ws_base = server.url.replace("http://", "ws://")
        return await _drive(cell, ws_base, rooms, cookies, server, valkey, work, started)


async def _drive(
    cell: Cell,
    ws_base: str,
    rooms: list[str],
    cookies: list[str],
    server: Server | calibrate.Trivial | None,
    valkey: Valkey | None,
    work: Path,
    started: float,
) -> dict[str, Any]:
    shares = plan(cell, cookies, rooms)
    members = Counter(s["room"] for share in shares for s in share)
    senders = sum(1 for share in shares for s in share if s["sender"] >= 0)
    pool = Pool(
        ws_base,
        shares,
        compression=cell.compression,
        max_seconds=cell.max_seconds,
        step_seconds=cell.step_seconds,
        pad=cell.pad,
        typing_share=cell.typing_share,
        reactions_per_s=cell.reactions_per_s / max(1, len(shares)),
    )
    try:
        ready = await pool.receive(timeout=cell.max_seconds)
        connected = sum(r["connected"] for r in ready)
        members = Counter()
        for r in ready:  # deliveries are expected only on sockets that are connected
            members.update(r["connected_rooms"])
        setup_seconds = time.monotonic() - started
        await asyncio.sleep(1.0)  # let join notices settle
        samples = []
        if valkey is not None:
            valkey.reset_stats()
        t0 = time.time() + 0.5
        pool.send(
            "load", {"t0": t0, "rates": cell.rates, "senders": senders, "drain": DRAIN_SECONDS}
        )
        profile = None
        for step in range(len(cell.rates) + 1):
            await asyncio.sleep(max(0.0, t0 + step * cell.step_seconds - time.time()))
            samples.append(sample(server, valkey, pool))
            if step == cell.profile_step and server is not None:
                worker = server.worker_pids()[0]
                profile = (work / f"pyspy-{cell.name}.txt", worker)
                py_spy(worker, max(2, int(cell.step_seconds) - 1), profile[0])
        done = merge(await pool.receive(timeout=cell.max_seconds))
        if valkey is not None:
            done["stored"] = stored_per_step(valkey, rooms)
        pool.send("stop")
        with contextlib.suppress(Exception):
            await pool.receive(timeout=20)
    finally:
        pool.stop()
    result = summarise(cell, done, samples, members, senders, connected)
    result["setup_seconds"] = round(setup_seconds, 1)
    if profile is not None:
        await asyncio.sleep(2)
        result["profile"] = {"pid": profile[1], "step": cell.profile_step, **top_frames(profile[0])}
        if profile[0].exists():
            flame_svg = work / f"flame-{cell.name}.svg"
            title = f"{cell.name}, one worker, step {(cell.profile_step or 0) + 1}"
            flame_svg.write_text(flame.render(profile[0].read_text(), title))
            result["profile"]["flame"] = str(flame_svg)
    return result


def sample(
    server: Server | calibrate.Trivial | None, valkey: Valkey | None, pool: Pool
) -> dict[str, Any]:
    entry: dict[str, Any] = {"t": time.time()}
    if server is not None:
        entry["server"] = server.usage()
    if valkey is not None:
        entry["redis_cpu"] = valkey.cpu()
        if isinstance(valkey, ValkeyCluster):
            entry["redis_node_cpu"] = valkey.node_cpu()
        entry["redis_rss"] = valkey.rss()
        entry["commandstats"] = valkey.commandstats()
    from bench.stack import proc_stat

    entry["loadgen_cpu"] = sum((proc_stat(pid) or (0.0, 0))[0] for pid in pool.pids)
    return entry


BODY_STEP = re.compile(r"^B(\d+)\.")


def stored_per_step(valkey: Valkey, rooms: list[str]) -> Counter[tuple[str, int]]:
    """(room, step) -> messages in the room's stream: what the server stored (acknowledged)."""
    assert valkey.client is not None
    stored: Counter[tuple[str, int]] = Counter()
    for room in rooms:
        start = "-"
        while True:
            batch = valkey.client.xrange(stream_key(room), min=start, count=5000)
            for _, fields in batch:
                match = BODY_STEP.match(fields.get("body", ""))
                if match:
                    stored[(room, int(match.group(1)))] += 1
            if len(batch) < 5000:
                break
            start = "(" + batch[-1][0]
        # Messages that were reacted to live on in the room's version set (chat/versions.py).
        for member in valkey.client.zrange(f"{{r:{room}}}:versions", 0, -1):
            match = BODY_STEP.match(json.loads(member.partition("\x1f")[2]).get("b", ""))
            if match:
                stored[(room, int(match.group(1)))] += 1
    return stored


def summarise(
    cell: Cell,
    done: dict[str, Any],
    samples: list[dict[str, Any]],
    members: Counter[str],
    senders: int,
    connected: int,
) -> dict[str, Any]:
    steps = []
    for step, rate in enumerate(cell.rates):
        sent = sum(n for (room, s), n in done["sent"].items() if s == step)
        # Expected: every stored message at every member. Without a Redis to ask (the echo
        # server), every sent message.
        stored_by = done.get("stored", done["sent"])
        stored = sum(n for (room, s), n in stored_by.items() if s == step)
        expected = sum(n * members[room] for (room, s), n in stored_by.items() if s == step)
        received = sum(n for (_, s), n in done["received"].items() if s == step)
        dups = sum(n for (_, s), n in done["dups"].items() if s == step)
        ooo = sum(n for (_, s), n in done["out_of_order"].items() if s == step)
        hist = done["hist"].get(step, [0] * clients.HIST_BUCKETS)
        in_window = done["timeline"].get(step, 0)
        before, after = samples[step], samples[step + 1]
        seconds = after["t"] - before["t"]
        row: dict[str, Any] = {
            "offered_msgs_per_s": rate,
            "offered_deliveries_per_s": round(rate * cell.clients / cell.rooms),
            "sent_msgs_per_s": round(sent / cell.step_seconds, 1),
            "stored_msgs": stored,
            "not_stored": sent - stored,
            "expected_deliveries": expected,
            "delivered": received,
            "lost": expected - received,
            "dups": dups,
            "out_of_order": ooo,
            "deliveries_per_s": round(in_window / cell.step_seconds),
            "p50_ms": ms(percentile(hist, 0.50)),
            "p90_ms": ms(percentile(hist, 0.90)),
            "p99_ms": ms(percentile(hist, 0.99)),
            "p999_ms": ms(percentile(hist, 0.999)),
            "max_ms": ms(percentile(hist, 1.0)),
            "loadgen_cores": round((after["loadgen_cpu"] - before["loadgen_cpu"]) / seconds, 2),
        }
        if "server" in after:
            cpu = after["server"]["total_cpu"] - before["server"]["total_cpu"]
            row["server_cores"] = round(cpu / seconds, 2)
            row["server_us_per_delivery"] = round(cpu / in_window * 1e6, 1) if in_window else None
        if "redis_cpu" in after:
            row["redis_cores"] = round((after["redis_cpu"] - before["redis_cpu"]) / seconds, 3)
            if "redis_node_cpu" in after:
                row["redis_node_cores"] = {
                    str(port): round((cpu - before["redis_node_cpu"][port]) / seconds, 3)
                    for port, cpu in after["redis_node_cpu"].items()
                }
            stats_before, stats_after = before["commandstats"], after["commandstats"]
            calls = {
                k: stats_after.get(k, 0) - stats_before.get(k, 0)
                for k in ("eval", "evalsha", "xadd", "publish", "spublish", "get", "set")
            }
            row["redis_calls"] = calls
            row["redis_calls_per_msg"] = {
                k: round(v / sent, 3) for k, v in calls.items() if sent and v
            }
            row["rss_mb"] = {
                str(pid): round(p["rss"] / 2**20, 1)
                for pid, p in after["server"]["processes"].items()
            }
            row["redis_rss_mb"] = round(after["redis_rss"] / 2**20, 1)
        row["sustained"] = bool(
            received
            and row["lost"] == 0
            and dups == 0
            and ooo == 0
            and (row["p99_ms"] or 1e9) <= 100
            and row["sent_msgs_per_s"] >= 0.95 * rate
            and stored == sent
        )
        steps.append(row)
    best = max((s["deliveries_per_s"] for s in steps if s["sustained"]), default=0)
    return {
        "cell": cell.name,
        "clients": cell.clients,
        "rooms": cell.rooms,
        "workers": cell.workers,
        "compression": cell.compression,
        "connected": connected,
        "senders": senders,
        "step_seconds": cell.step_seconds,
        "steps": steps,
        "max_sustained_deliveries_per_s": best,
        "errors": dict(done["errors"]),
        "closes": dict(done["closes"]),
        "reconnects": done["reconnects"],
        "connect_failures": done["connect_failures"],
        "acks": done["acks"],
        "typing_share": cell.typing_share,
        "reactions_by_status": dict(done["reactions"]),
    }


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


# -- idle memory ----------------------------------------------------------------------------
async def run_idle(
    clients_n: int, compression: bool, work: Path, rooms_n: int = 10
) -> dict[str, Any]:
    """RSS of one worker before and after clients_n idle signed-in sockets."""
    work.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before any load
    cell = Cell(
        clients=clients_n,
        rooms=rooms_n,
        workers=1,
        senders_per_room=0,
        # 10 tabs per person: a person's tabs tell each other when one opens a room
        # (chat/sidebar_hub.py), so 500 each made connecting quadratic (over 240 s).
        sockets_per_user=10,
        compression=compression,
        max_seconds=240,
    )
    async with stack(1, work) as (server, _valkey, smtp):
        users = -(-clients_n // cell.sockets_per_user)
        cookies = await sign_in_many(server.url, smtp, users)
        rooms = await create_rooms(server.url, cookies[0], rooms_n)
        # Warm the worker up (templates, Redis pool, code paths) with a few sockets first.
        warm = Pool(
            server.url.replace("http://", "ws://"),
            plan(
                Cell(
                    clients=20,
                    rooms=rooms_n,
                    workers=1,
                    processes=1,
                    senders_per_room=0,
                    compression=compression,
                ),
                cookies,
                rooms,
            ),
            compression=compression,
            max_seconds=60,
        )
        await warm.receive(60)
        warm.send("stop")
        await warm.receive(30)
        warm.stop()
        await asyncio.sleep(2)
        worker = server.worker_pids()[0]
        before = server.usage()["processes"][worker]["rss"]
        started = time.monotonic()
        pool = Pool(
            server.url.replace("http://", "ws://"),
            plan(cell, cookies, rooms),
            compression=compression,
            max_seconds=240,
        )
        try:
            ready = merge(await pool.receive(240))
            connect_seconds = time.monotonic() - started
            await asyncio.sleep(3)
            after = server.usage()["processes"][worker]["rss"]
            pool.send("stop")
            await pool.receive(120)
        finally:
            pool.stop()
        await asyncio.sleep(3)
        released = server.usage()["processes"][worker]["rss"]
    connected = ready["connected"]
    return {
        "clients": clients_n,
        "compression": compression,
        "connected": connected,
        "connect_failures": ready["connect_failures"],
        "connect_errors": dict(ready["errors"]),
        "connect_seconds": round(connect_seconds, 1),
        "connect_p99_ms": ms(quantile(ready["connect_seconds"], 0.99)),
        "worker_rss_before_mb": round(before / 2**20, 1),
        "worker_rss_idle_mb": round(after / 2**20, 1),
        "worker_rss_after_close_mb": round(released / 2**20, 1),
        "kb_per_connection": round((after - before) / max(1, connected) / 1024, 1),
        "errors": dict(ready["errors"]),
    }


# -- reconnect storm ------------------------------------------------------------------------
async def run_storm(
    clients_n: int,
    rooms_n: int,
    workers: int,
    missed: int,
    work: Path,
    pool_size: int | None = None,
) -> dict[str, Any]:
    """clients_n sockets drop together; `missed` messages per room are posted; all reconnect."""
    work.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before any load
    cell = Cell(
        clients=clients_n,
        rooms=rooms_n,
        workers=workers,
        senders_per_room=0,
        sockets_per_user=100,
        max_seconds=300,
    )
    redis_note = (
        f"?max_connections={pool_size}" if pool_size else "as shipped (chat/store.py POOL_SIZE)"
    )
    async with stack(workers, work, pool_size=pool_size) as (server, valkey, smtp):
        users = -(-clients_n // cell.sockets_per_user)
        cookies = await sign_in_many(server.url, smtp, users + 1)
        poster = cookies.pop()
        rooms = await create_rooms(server.url, poster, rooms_n)
        ws_base = server.url.replace("http://", "ws://")
        for room in rooms:  # so every client knows a last id, as a browser would
            await post(ws_base, poster, room, 1, "seed")
        pool = Pool(ws_base, plan(cell, cookies, rooms), compression=True, max_seconds=300)
        try:
            ready = merge(await pool.receive(300))
            pool.send("disconnect")
            await pool.receive(120)
            for room in rooms:
                await post(ws_base, poster, room, missed, "missed")
            assert valkey.client is not None
            targets = {}
            for room in rooms:
                newest = valkey.client.xrevrange(stream_key(room), count=1)
                ms_part, seq_part = newest[0][0].split("-")
                targets[room] = [int(ms_part), int(seq_part)]
            await asyncio.sleep(1)
            cpu_before = server.usage()["total_cpu"]
            started = time.monotonic()
            pool.send("reconnect", {"targets": targets, "limit": 60, "concurrency": 5000})
            done = merge(await pool.receive(120))
            wall = time.monotonic() - started
            cpu = server.usage()["total_cpu"] - cpu_before
            pool.send("stop")
            with contextlib.suppress(Exception):
                await pool.receive(60)
        finally:
            pool.stop()
    finished = done["done_seconds"]
    return {
        "clients": clients_n,
        "rooms": rooms_n,
        "workers": workers,
        "connected_before": ready["connected"],
        "missed_per_room": missed,
        "backfilled": len(finished),
        "all_backfilled_seconds": round(finished[-1], 2) if len(finished) == clients_n else None,
        "p50_seconds": round(quantile(finished, 0.5) or 0, 2),
        "p99_seconds": round(quantile(finished, 0.99) or 0, 2),
        "messages_backfilled": done["missed"],
        "wall_seconds": round(wall, 1),
        "server_cpu_seconds": round(cpu, 1),
        "connect_failures": done["connect_failures"],
        "errors": dict(done["errors"]),
        "redis_url_note": redis_note,
    }


async def post(ws_base: str, cookie: str, room: str, count: int, prefix: str) -> None:
    """Send `count` messages to a room over a real socket, each acknowledged."""
    async with websockets.connect(
        f"{ws_base}/rooms/{room}/ws", additional_headers={"Cookie": cookie}
    ) as ws:
        for n in range(count):
            cid = f"{prefix}-{room}-{n:06d}"
            await ws.send(json.dumps({"body": f"{prefix} {n}", "client_id": cid}))
            async with asyncio.timeout(10):
                while 'id="compose"' not in str(await ws.recv()):
                    pass


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="chat-bench-"))
