"""The archive's numbers: can the archiver keep up, and how fast is search at a million messages.

    .venv/bin/python -m bench.archive_bench archiver   # ~1-2 minutes
    .venv/bin/python -m bench.archive_bench search     # ~10 minutes the first time, then ~3-5
    .venv/bin/python -m bench.archive_bench search --columns-copy /tmp/archive-bench-1m-columns.sqlite3
                                                       # + proposal 2 on a copy (~4 more minutes once)
    (--regenerate: a new archive; --quiet-wait 0: measure at once, even on a busy machine)

archiver  A Redis server (embedded valkey, no AOF) and chat/archiver.py's Archiver in a process
          of its own (so its CPU time is its own):
          (a) catch-up: 60,000 messages in 10 rooms are posted first (the post script itself,
              chat/messages.py `_POST`, pipelined), then one Archiver with a fresh group reads
              them all: messages/s until the archive holds every one;
          (b) live: another process posts 2,000 messages/s for 20 s through the same script
              while the Archiver runs; the lag (posted - archived) is sampled every second.
search    1,000,000 messages (English and Chinese, Zipf-distributed words: bench/archive_data.py;
          20 rooms, 200 authors) stored through Archive.store in batches of 5,000, cached in
          /tmp (--db) so a re-run only searches; then p50/p95/p99 of Archive.search for each
          query class, called as chat/search.py calls it (every room readable, limit 21), with
          EXPLAIN QUERY PLAN for each, and the same queries through the alternative searches
          bench/REPORT.md proposes for chat/archive.py (WindowedArchive on the same file;
          ColumnsArchive on a copy of the two indexes with two more columns).

Raw results: bench/results/archive-<scenario>-<date>.json, with the commit measured and the
CPU that other processes used meanwhile (the machine is shared); a Markdown summary is printed.
Each measurement first waits (up to --quiet-wait seconds) for the machine to be idle.
The post script is called directly with a pre-rendered fragment rather than through
post_message(), which costs ~0.66 ms of Python per message (template rendering): 2,000/s
would take 1.3 of the machine's 2 cores away from the archiver being measured. What lands
in Redis is the same: the stream entry, the version-set member, the room counter, the
de-duplication key and the archived-streams set.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import html
import inspect
import itertools
import json
import os
import platform
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import archive_data
from chat import archiver, folding, history, messages, unread, versions
from chat.archive import SLOTS, Archive, Entry, Hit
from chat.embedded_redis import EmbeddedRedis

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PER_PAGE = 20  # chat/search.py
LIMIT = PER_PAGE + 1
HISTORY_MAXLEN = 10_000  # the app's defaults (chat/settings.py)
HISTORY_KEEP = 5_000
COPY_BUILT: dict[str, Any] = {}  # proposal 2's copy of the indexes: build time, size
TINY_ROOM = "dm-p-0007-p-0150"  # readable, holds none of the searched words (no rows at all)


# chat/archive.py's private helpers as of 2e15e30, kept here so the proposals do not depend on
# that module's internals.


def _phrase(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _body(state: str) -> str:
    parsed = json.loads(state)
    return "" if parsed.get("d") else str(parsed.get("b", ""))


def _entry(room: str, ms: int, seq: int, fields: str, state: str) -> Entry:
    return Entry(room, f"{ms}-{seq}", json.loads(fields), state)


# --------------------------------------------------------------------------------------------
# Shared helpers


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(after_name[11]) + int(after_name[12])) / os.sysconf("SC_CLK_TCK")


def machine_jiffies() -> int:
    """CPU time (clock ticks) the whole machine has spent busy since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(values) - values[3] - values[4]  # less idle and iowait


class Load:
    """Cores busy over a window: the whole machine, and this process."""

    def __init__(self) -> None:
        self.wall = time.monotonic()
        self.machine = machine_jiffies()
        self.own = time.process_time()

    def cores(self) -> tuple[float, float]:
        wall = max(time.monotonic() - self.wall, 1e-6)
        machine = (machine_jiffies() - self.machine) / os.sysconf("SC_CLK_TCK") / wall
        return machine, (time.process_time() - self.own) / wall


QUIET_WAIT = [300.0]  # --quiet-wait


def wait_quiet(limit: float | None = None, threshold: float = 0.25) -> dict[str, Any]:
    """Wait (up to `limit` s) until the machine is idle: other people's tests share it."""
    limit = QUIET_WAIT[0] if limit is None else min(limit, QUIET_WAIT[0])
    started = time.monotonic()
    busy = 0.0
    while True:
        window = Load()
        time.sleep(2.0)
        busy, _ = window.cores()
        if busy < threshold or time.monotonic() - started > limit:
            break
        print(f"  waiting for a quiet machine ({busy:.2f} cores busy)", flush=True)
    return {
        "waited_seconds": round(time.monotonic() - started - 2.0, 1),
        "busy_cores": round(busy, 2),
    }


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_kb = 0
    with open("/proc/meminfo") as info:
        for line in info:
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(memory_kb / 2**20, 1),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(),
    }


def result_commit() -> str:
    """The commit measured, "+" if chat/ or app.py has changes not committed."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE.parent, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "chat", "app.py"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "?"
    return head + ("+" if dirty else "")


def save(scenario: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"archive-{scenario}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return path


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


# --------------------------------------------------------------------------------------------
# Posting: the app's post script, as post_message() calls it


def fragment(body: str) -> str:
    """Stands for the rendered message (it only goes to PUBLISH, which nobody hears here)."""
    return (
        f'<article class="message" id="m-{messages.ID_PLACEHOLDER}" data-seq="0">'
        f'<header><a class="who">x</a><time datetime="">now</time></header>'
        f"<p>{html.escape(body)}</p></article>"
    )


def queue_post(
    pipe: Any, sha: str, slug: str, person: archive_data.Person, body: str, client_id: str
) -> None:
    """post_message()'s EVAL (chat/messages.py), for a person, without mentions."""
    fields = ["author", person.email, "pid", person.pid, "name", person.name]
    fields += ["ts", str(int(time.time() * 1000)), "cid", client_id]
    pipe.evalsha(
        sha,
        4,
        history.stream_key(slug),
        f"{{r:{slug}}}:dedupe:s-{person.pid}:{client_id}",
        unread.seq_key(slug),
        versions.versions_key(slug),
        HISTORY_MAXLEN,
        messages.room_channel(slug),
        fragment(body),
        messages.ID_PLACEHOLDER,
        messages.DEDUPE_SECONDS,
        "",
        versions.first_text(body),
        min(HISTORY_KEEP, HISTORY_MAXLEN),
        *fields,
    )
    pipe.sadd(archiver.ARCHIVED_STREAMS, history.stream_key(slug))  # as post_message does


class Poster:
    """Messages from the synthetic people, in rooms r00..r<n>, by the post script."""

    def __init__(self, client: Any, rooms: int, seed: int) -> None:
        self.client = client
        self.sha: str = client.script_load(messages._POST)
        self.rooms = [f"r{index:02d}" for index in range(rooms)]
        self.people = archive_data.people()
        self.weights = archive_data.person_weights(len(self.people))
        self.rng = random.Random(seed)
        self.maker = archive_data.TextMaker(seed)
        self.count = 0

    def queue(self, pipe: Any, body: str | None = None, slug: str | None = None) -> None:
        person = self.people[archive_data.pick(self.rng, self.weights)]
        slug = slug or self.rooms[self.count % len(self.rooms)]
        text = body if body is not None else self.maker.text()
        queue_post(pipe, self.sha, slug, person, text, f"bench-{self.count:09d}")
        self.count += 1

    def posted(self) -> int:
        """Messages in the rooms' counters (what the post script has numbered)."""
        values = self.client.mget([unread.seq_key(slug) for slug in self.rooms])
        return sum(int(value or 0) for value in values)


# --------------------------------------------------------------------------------------------
# Child processes: the archiver, the live poster


async def child_archiver(url: str, path: str, group: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url, decode_responses=True)  # as chat/store.py's pool
    worker = archiver.Archiver(client, Archive(path), group)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await worker.run()


def child_poster(url: str, rooms: int, rate: float, seconds: float, seed: int) -> None:
    from redis import Redis

    client = Redis.from_url(url, decode_responses=True)
    poster = Poster(client, rooms, seed)
    total = int(rate * seconds)
    bodies = [poster.maker.text() for _ in range(total)]
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    cpu0 = time.process_time()
    sent = 0
    per_second: list[int] = []
    late = 0.0
    while sent < total:
        elapsed = time.monotonic() - start
        due = min(total, int(rate * elapsed) + 1)
        if due > sent:
            late = max(late, (due - sent) / rate)
            pipe = client.pipeline(transaction=False)
            for index in range(sent, due):
                poster.queue(pipe, bodies[index])
            pipe.execute()
            second = int(elapsed)
            while len(per_second) <= second:
                per_second.append(0)
            per_second[second] += due - sent
            sent = due
        time.sleep(0.005)
    took = time.monotonic() - start
    print(
        json.dumps(
            {
                "sent": sent,
                "seconds": round(took, 3),
                "rate": round(sent / took, 1),
                "per_second": per_second,
                "max_backlog_seconds": round(late, 4),
                "cpu_seconds": round(time.process_time() - cpu0, 2),
            }
        ),
        flush=True,
    )


class Child:
    """A child process of this module that says "ready" and starts at "go"."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.archive_bench", *args],
            cwd=HERE.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != "ready":
            self.stop()
            raise RuntimeError(f"child {args[0]} did not start: {line!r}")
        self.pid = self.process.pid

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def output(self, timeout: float) -> str:
        out, _ = self.process.communicate(timeout=timeout)
        return out

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def count_archived(db: sqlite3.Connection) -> int:
    (count,) = db.execute("SELECT count(*) FROM messages").fetchone()
    return int(count)


def group_backlog(client: Any, rooms: Sequence[str], group: str) -> int:
    """Entries of the group not yet read (lag) or read but not acknowledged (pending)."""
    total = 0
    for slug in rooms:
        for info in client.xinfo_groups(history.stream_key(slug)):
            if info["name"] == group:
                total += int(info.get("lag") or 0) + int(info["pending"])
    return total


# --------------------------------------------------------------------------------------------
# Scenario: archiver


def preload(poster: Poster, count: int) -> float:
    """`count` messages through the post script, pipelined; the seconds it took."""
    start = time.perf_counter()
    bodies = [poster.maker.text() for _ in range(count)]
    made = time.perf_counter()
    for first in range(0, count, 1000):
        pipe = poster.client.pipeline(transaction=False)
        for body in bodies[first : first + 1000]:
            poster.queue(pipe, body)
        pipe.execute()
    print(f"  preloaded {count:,} messages in {time.perf_counter() - made:.1f} s", flush=True)
    return time.perf_counter() - start


def fresh_archive(path: Path) -> sqlite3.Connection:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    Archive(path).connection().close()  # the schema, before anyone counts
    return sqlite3.connect(path, timeout=30)


def catch_up(url: str, work: Path, count: int, rooms: int) -> dict[str, Any]:
    from redis import Redis

    print(f"archiver catch-up: {count:,} messages in {rooms} rooms", flush=True)
    client = Redis.from_url(url, decode_responses=True)
    client.flushall()
    poster = Poster(client, rooms, seed=5)
    preload_seconds = preload(poster, count)
    stored = sum(client.xlen(history.stream_key(slug)) for slug in poster.rooms)
    assert stored == count, (stored, count)
    path = work / "catch-up.sqlite3"
    db = fresh_archive(path)
    group = "bench-catch-up"
    child = Child("_archiver", url, str(path), group)
    redis_pid = int(client.info("server")["process_id"])
    try:
        quiet = wait_quiet()
        cpu0, redis0 = child.cpu(), cpu_seconds(redis_pid)
        window = Load()
        start = time.monotonic()
        child.go()
        samples: list[tuple[float, int]] = []
        done = 0
        while done < count and time.monotonic() - start < 600:
            time.sleep(0.2)
            done = count_archived(db)
            samples.append((round(time.monotonic() - start, 3), done))
        took = time.monotonic() - start
        cpu = child.cpu() - cpu0
        redis_cpu = cpu_seconds(redis_pid) - redis0
        machine_cores, own_cores = window.cores()
    finally:
        child.stop()
    others = machine_cores - own_cores - (cpu + redis_cpu) / took
    first = next(t for t, n in samples if n >= count * 0.1)
    last = next(t for t, n in samples if n >= count * 0.9)
    steady = count * 0.8 / (last - first) if last > first else float("nan")
    result = {
        "messages": count,
        "rooms": rooms,
        "preload_seconds": round(preload_seconds, 2),
        "archived": done,
        "seconds": round(took, 2),
        "messages_per_second": round(done / took, 1),
        "steady_messages_per_second_10_to_90": round(steady, 1),
        "archiver_cpu_seconds": round(cpu, 2),
        "archiver_cpu_us_per_message": round(cpu / max(done, 1) * 1e6, 1),
        "archiver_cores": round(cpu / took, 2),
        "redis_cpu_seconds": round(redis_cpu, 2),
        "archive_bytes": path.stat().st_size + Path(str(path) + "-wal").stat().st_size,
        "machine_busy_cores": round(machine_cores, 2),
        "other_processes_cores": round(others, 2),
        "quiet_before": quiet,
        "samples": samples,
    }
    print(
        f"  {done:,} archived in {took:.1f} s: {done / took:,.0f} msg/s "
        f"(steady {steady:,.0f}); archiver CPU {cpu:.1f} s ({cpu / took:.2f} cores); "
        f"other processes {others:.2f} cores",
        flush=True,
    )
    db.close()
    client.close()
    return result


def live(url: str, work: Path, rooms: int, rate: float, seconds: float) -> dict[str, Any]:
    from redis import Redis

    print(f"archiver live: {rate:,.0f} msg/s for {seconds:.0f} s", flush=True)
    client = Redis.from_url(url, decode_responses=True)
    client.flushall()
    seeder = Poster(client, rooms, seed=9)
    pipe = client.pipeline(transaction=False)
    for slug in seeder.rooms:  # every room exists and is listed before the archiver starts
        seeder.queue(pipe, "first message", slug)
    pipe.execute()
    seeded = len(seeder.rooms)
    path = work / "live.sqlite3"
    db = fresh_archive(path)
    group = "bench-live"
    redis_pid = int(client.info("server")["process_id"])
    arch = Child("_archiver", url, str(path), group)
    poster: Child | None = None
    try:
        arch.go()
        deadline = time.monotonic() + 30
        while count_archived(db) < seeded and time.monotonic() < deadline:
            time.sleep(0.05)
        poster = Child("_poster", url, str(rooms), str(rate), str(seconds), "13")
        quiet = wait_quiet()
        cpu0, redis0 = arch.cpu(), cpu_seconds(redis_pid)
        window = Load()
        start = time.monotonic()
        poster.go()
        samples: list[dict[str, Any]] = []
        posting_done: float | None = None
        cpu_at_end = redis_cpu_at_end = machine_cores = own_cores = 0.0
        drained = False
        next_sample = start + 1.0
        while True:
            time.sleep(max(0.0, next_sample - time.monotonic()))
            next_sample += 1.0
            now = time.monotonic() - start
            posted = seeder.posted() - seeded
            archived = count_archived(db) - seeded
            sample = {
                "t": round(now, 2),
                "posted": posted,
                "archived": archived,
                "lag": posted - archived,
                "group_backlog": group_backlog(client, seeder.rooms, group),
                "archiver_cpu": round(arch.cpu() - cpu0, 2),
            }
            samples.append(sample)
            if posting_done is None and poster.process.poll() is not None:
                posting_done = now
                cpu_at_end = arch.cpu() - cpu0
                redis_cpu_at_end = cpu_seconds(redis_pid) - redis0
                machine_cores, own_cores = window.cores()
            if posting_done is not None and posted - archived == 0:
                drained = True
                break
            if now > seconds + 90:
                break
        report = json.loads(poster.output(timeout=30).strip().splitlines()[-1])
        took = time.monotonic() - start
        total_cpu = arch.cpu() - cpu0
    finally:
        arch.stop()
        if poster is not None:
            poster.stop()
    posting_seconds = posting_done or took
    others = (
        machine_cores
        - own_cores
        - (cpu_at_end + redis_cpu_at_end + report["cpu_seconds"]) / posting_seconds
    )
    during = [s for s in samples if posting_done is None or s["t"] <= posting_done]
    lag_at_end = during[-1]["lag"] if during else 0
    max_lag = max(s["lag"] for s in samples)
    drain_seconds = round(took - (posting_done or took), 2) if drained else None
    archived_total = samples[-1]["archived"]
    kept_up = bool(
        drained
        and max(s["lag"] for s in during) <= rate  # never more than a second behind
        and report["rate"] >= 0.95 * rate
    )
    result = {
        "target_rate": rate,
        "seconds": seconds,
        "rooms": rooms,
        "poster": report,
        "archived": archived_total,
        "max_lag": max_lag,
        "lag_when_posting_stopped": lag_at_end,
        "drained": drained,
        "drain_seconds_after_posting": drain_seconds,
        "kept_up": kept_up,
        "archiver_cpu_seconds_while_posting": round(cpu_at_end, 2),
        "archiver_cpu_seconds_total": round(total_cpu, 2),
        "archiver_cpu_us_per_message": round(total_cpu / max(archived_total, 1) * 1e6, 1),
        "archiver_cores_while_posting": round(cpu_at_end / report["seconds"], 2),
        "redis_cpu_seconds_while_posting": round(redis_cpu_at_end, 2),
        "machine_busy_cores_while_posting": round(machine_cores, 2),
        "other_processes_cores": round(others, 2),
        "quiet_before": quiet,
        "samples": samples,
    }
    print(
        f"  posted {report['sent']:,} at {report['rate']:,.0f}/s; lag max {max_lag:,}, "
        f"{lag_at_end:,} when posting stopped; drained: {drained} "
        f"({drain_seconds} s); archiver {cpu_at_end / report['seconds']:.2f} cores; "
        f"kept up: {kept_up}; other processes {others:.2f} cores",
        flush=True,
    )
    db.close()
    client.close()
    return result


def scenario_archiver(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="archive-bench-"))
    server = EmbeddedRedis(work / "redis", appendonly=False)
    url = server.start()
    try:
        catch_ups = [catch_up(url, work, args.messages, args.rooms)]
        lives = [live(url, work, args.rooms, args.rate, args.seconds)]
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "scenario": "archiver",
        "machine": machine(),
        "redis": "valkey (embedded, appendonly no)",
        "settings": {
            "batch": archiver.BATCH,
            "keys_per_read": archiver.KEYS_PER_READ,
            "history_maxlen": HISTORY_MAXLEN,
            "history_keep": HISTORY_KEEP,
        },
        "catch_up": catch_ups,
        "live": lives,
    }
    print()
    print(
        table(
            [
                "commit",
                "messages",
                "seconds",
                "msg/s",
                "steady msg/s (10-90 %)",
                "archiver CPU s",
                "archiver cores",
                "µs CPU/msg",
                "Redis CPU s",
                "other load (cores)",
            ],
            [
                [
                    result_commit(),
                    f"{c['messages']:,}",
                    fmt(c["seconds"]),
                    fmt(c["messages_per_second"], 0),
                    fmt(c["steady_messages_per_second_10_to_90"], 0),
                    fmt(c["archiver_cpu_seconds"]),
                    c["archiver_cores"],
                    fmt(c["archiver_cpu_us_per_message"], 0),
                    fmt(c["redis_cpu_seconds"]),
                    c["other_processes_cores"],
                ]
                for c in catch_ups
            ],
        )
    )
    print()
    print(
        table(
            [
                "commit",
                "posted msg/s",
                "max lag",
                "lag when posting stopped",
                "drained after",
                "archiver cores",
                "µs CPU/msg",
                "other load (cores)",
                "kept up",
            ],
            [
                [
                    result_commit(),
                    fmt(lv["poster"]["rate"], 0),
                    f"{lv['max_lag']:,}",
                    f"{lv['lag_when_posting_stopped']:,}",
                    "—"
                    if lv["drain_seconds_after_posting"] is None
                    else f"{lv['drain_seconds_after_posting']} s",
                    lv["archiver_cores_while_posting"],
                    fmt(lv["archiver_cpu_us_per_message"], 0),
                    lv["other_processes_cores"],
                    "yes" if lv["kept_up"] else "**no**",
                ]
                for lv in lives
            ],
        )
    )
    return result


# --------------------------------------------------------------------------------------------
# Scenario: search


def generate(path: Path, count: int, batch: int, seed: int) -> dict[str, Any]:
    """`count` messages stored through Archive.store, `batch` per transaction."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    rng = random.Random(seed)
    maker = archive_data.TextMaker(seed)
    people = archive_data.people()
    person_weights = archive_data.person_weights(len(people))
    rooms = archive_data.rooms()
    room_weights = archive_data.room_weights(len(rooms))
    numbers = dict.fromkeys(rooms, 0)
    last: dict[str, tuple[int, int]] = {}
    store = Archive(path)
    ms = 1_735_689_600_000  # 2025-01-01, then ~30 s between messages: about a year
    making = storing = storing_cpu = 0.0
    rates: list[dict[str, Any]] = []
    window = Load()
    started = time.perf_counter()
    done = 0
    while done < count:
        tick = time.perf_counter()
        entries: list[Entry] = []
        for _ in range(min(batch, count - done)):
            ms += int(rng.expovariate(1 / 30_000)) + 1
            slug = rooms[archive_data.pick(rng, room_weights)]
            person = people[archive_data.pick(rng, person_weights)]
            numbers[slug] += 1
            prev_ms, prev_seq = last.get(slug, (0, -1))
            seq = prev_seq + 1 if prev_ms == ms else 0
            last[slug] = (ms, seq)
            fields = {
                "n": str(numbers[slug]),
                "author": person.email,
                "pid": person.pid,
                "name": person.name,
                "ts": str(ms),
            }
            body = maker.text()
            roll = rng.random()
            if roll < 0.005:
                state = json.dumps({"v": 1, "d": 1})
            elif roll < 0.025:
                state = json.dumps(
                    {"v": 1, "b": body, "men": [], "e": ms + 60_000}, ensure_ascii=False
                )
            else:
                state = versions.first_text(body)
            entries.append(Entry(slug, f"{ms}-{seq}", fields, state))
        made = time.perf_counter()
        cpu = time.thread_time()
        store.store(entries, [])
        stored = time.perf_counter()
        cpu = time.thread_time() - cpu
        making += made - tick
        storing += stored - made
        storing_cpu += cpu
        done += len(entries)
        rates.append(
            {
                "done": done,
                "per_second": round(len(entries) / (stored - made), 1),
                "cpu_us_per_message": round(cpu / len(entries) * 1e6, 1),
            }
        )
        if done % 100_000 == 0 or done == count:
            print(
                f"  {done:,} stored: {done / storing:,.0f} msg/s in Archive.store "
                f"(last batch {rates[-1]['per_second']:,.0f}/s, "
                f"{storing_cpu / done * 1e6:,.0f} µs CPU/msg), "
                f"{time.perf_counter() - started:,.0f} s",
                flush=True,
            )
    total = time.perf_counter() - started
    machine_cores, own_cores = window.cores()
    db = store.connection()
    checkpoint = time.perf_counter()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    checkpoint_seconds = time.perf_counter() - checkpoint
    sizes = {
        name: int(size)
        for name, size in db.execute(
            "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
        )
    }
    store.close()
    main_bytes = path.stat().st_size
    return {
        "messages": count,
        "batch": batch,
        "seed": seed,
        "rooms": len(rooms),
        "people": len(people),
        "room_sizes": {slug: numbers[slug] for slug in rooms},
        "generation_seconds": round(total, 1),
        "text_making_seconds": round(making, 1),
        "store_seconds": round(storing, 1),
        "insert_messages_per_second": round(count / storing, 1),
        "insert_cpu_us_per_message": round(storing_cpu / count * 1e6, 1),
        "other_processes_cores": round(machine_cores - own_cores, 2),
        "batch_rates": rates,
        "checkpoint_seconds": round(checkpoint_seconds, 2),
        "main_file_bytes": main_bytes,
        "bytes_per_million": round(main_bytes / count * 1_000_000),
        "bytes_by_table": sizes,
        "sqlite": sqlite3.sqlite_version,
    }


def query_classes(meta: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(name, description, query texts as typed) for each class of search."""
    english = archive_data.english_vocabulary()
    chinese = archive_data.chinese_vocabulary()
    head_en = [w for w in english.head if len(w) >= 4 and w.isalpha()]
    top_en = head_en[:5]  # "that", "have", "this", "with", "just"
    common_en = head_en[60:66]
    rare_en = english.tail[500:506]
    long_zh_common = [w for w in chinese.head if len(w) >= 3][:6]
    long_zh_rare = [w for w in chinese.tail[300:600] if len(w) == 3][:6]
    top_zh = ["的", "了", "是", "我", "你", "在"]
    two_zh = [w for w in chinese.head if len(w) == 2][:6]
    rare_two_zh = [w for w in chinese.tail[300:600] if len(w) == 2][:6]
    people = archive_data.people()
    sizes = meta["room_sizes"]
    big_room = max(sizes, key=sizes.get)
    small_room = min(sizes, key=sizes.get)
    top_person, tail_person = people[0].name, people[180].name
    first_name = people[0].name.split()[0].lower()
    pairs = list(zip(common_en, reversed(common_en), strict=True))
    return [
        ("en 1 word, top", "the 5 most frequent 4+ letter words", top_en),
        ("en 1 word, common", "head words ranked ~70", common_en),
        ("en 1 word, rare", "tail words (~50 messages each)", rare_en),
        ("en 2 words, common+common", "", [f"{a} {b}" for a, b in pairs]),
        (
            "en 2 words, common+rare",
            "",
            [f"{a} {b}" for a, b in zip(common_en, rare_en, strict=True)],
        ),
        ("en 2 words, top+top", "", [f"{a} {b}" for a, b in itertools.pairwise(top_en)]),
        ("en 1 word, 2 letters", "word index", list(archive_data.ENGLISH_SHORT[:6])),
        (
            "en 2 words, long+2 letters",
            "trigrams + word index",
            [f"{a} {b}" for a, b in zip(common_en, archive_data.ENGLISH_SHORT, strict=False)],
        ),
        ("zh 3+ chars, common", "trigram path", long_zh_common),
        ("zh 3 chars, rare", "trigram path", long_zh_rare),
        ("zh 1 char, top", "word index", top_zh),
        ("zh 2 chars, common", "word index", two_zh),
        ("zh 2 chars, rare", "word index", rare_two_zh),
        (
            "zh 2 words of 2 chars",
            "word index, two phrases",
            [f"{a} {b}" for a, b in itertools.pairwise(two_zh)],
        ),
        (
            "zh 3 chars + 2 chars",
            "trigrams + word index",
            [f"{a} {b}" for a, b in zip(long_zh_common, two_zh, strict=False)],
        ),
        (
            "zh 3 chars + 1 char",
            "trigrams + word index",
            [f"{a} {b}" for a, b in zip(long_zh_common, top_zh, strict=False)],
        ),
        (
            "zh 3 chars + rare 2 chars",
            "trigrams + word index",
            [f"{a} {b}" for a, b in zip(long_zh_common, rare_two_zh, strict=False)],
        ),
        ("en 2 words, long+'to'", "trigrams + word index", [f"{w} to" for w in common_en]),
        ("en 2 words, rare+'to'", "trigrams + word index", [f"{w} to" for w in rare_en]),
        (
            "from: most active author",
            "common word",
            [f'{w} from:"{top_person}"' for w in common_en],
        ),
        (
            "from: quiet author",
            "common word, author #181",
            [f'{w} from:"{tail_person}"' for w in common_en],
        ),
        ("from: first name (prefix)", "common word", [f"{w} from:{first_name}" for w in common_en]),
        ("from: quiet author, top word", "", [f'{w} from:"{tail_person}"' for w in top_en]),
        (
            "from: unknown name (typo), top word",
            "no hit: every match is read",
            [f'{w} from:"{tail_person[:-1]}"' for w in top_en],
        ),
        (
            f"in: biggest room ({big_room})",
            "common word",
            [f"{w} in:{big_room}" for w in common_en],
        ),
        (
            f"in: smallest room ({small_room})",
            "common word",
            [f"{w} in:{small_room}" for w in common_en],
        ),
        (
            f"in: smallest room ({small_room}), rare",
            "rare word",
            [f"{w} in:{small_room}" for w in rare_en],
        ),
        (
            "in: tiny room without the word, top word",
            "a direct conversation: no hit, every match is read",
            [f"{w} in:{TINY_ROOM}" for w in top_en],
        ),
        ("page 2, en common", "More results", common_en),
        ("page 2, en top", "More results", top_en),
        ("page 2, zh 1 char", "More results", top_zh),
    ]


SearchFunction = Callable[
    [Sequence[str], Sequence[str], Sequence[str], str | None, int | None, int], Any
]


def hits_of(answer: Any) -> list[Hit]:
    """Archive.search's hits, whether it answers a list or an object with `.hits`."""
    return list(answer if isinstance(answer, list) else answer.hits)


def cut_short(answer: Any) -> bool:
    """Did the search stop early (a time budget ran out, `.stopped_at` set)?"""
    return getattr(answer, "stopped_at", None) is not None


def complete(archive: Archive) -> SearchFunction:
    """Archive.search with no time budget, if it has one: the reference hits."""
    if "budget_seconds" not in inspect.signature(archive.search).parameters:
        return archive.search
    return functools.partial(archive.search, budget_seconds=3600.0)


def run_class(
    search: SearchFunction,
    rooms: list[str],
    queries: list[str],
    runs: int,
    second_page: bool,
    budget: float,
) -> dict[str, Any]:
    from chat.search import parse

    parsed = [parse(text) for text in queries]
    cursors: list[int | None] = []
    for query in parsed:
        cursor = None
        if second_page:
            hits = hits_of(
                search(
                    [query.room] if query.room else rooms,
                    list(query.long_terms),
                    list(query.short_terms),
                    query.author,
                    None,
                    LIMIT,
                )
            )
            cursor = hits[PER_PAGE - 1].row if len(hits) > PER_PAGE else None
        cursors.append(cursor)
    times: list[float] = []
    per_query: dict[str, list[float]] = {text: [] for text in queries}
    found: dict[str, int] = {}
    short = 0
    started = time.perf_counter()
    for run in range(runs):
        index = run % len(parsed)
        query = parsed[index]
        tick = time.perf_counter()
        answer = search(
            [query.room] if query.room else rooms,
            list(query.long_terms),
            list(query.short_terms),
            query.author,
            cursors[index],
            LIMIT,
        )
        hits = hits_of(answer)
        took = (time.perf_counter() - tick) * 1000
        short += cut_short(answer)
        times.append(took)
        per_query[queries[index]].append(took)
        found[queries[index]] = len(hits)
        if time.perf_counter() - started > budget and run >= len(parsed):
            break
    return {
        "runs": len(times),
        "p50_ms": round(percentile(times, 0.50), 2),
        "p95_ms": round(percentile(times, 0.95), 2),
        "p99_ms": round(percentile(times, 0.99), 2),
        "max_ms": round(max(times), 2),
        "pages_cut_short": short,
        "per_query": {
            text: {
                "median_ms": round(statistics.median(values), 2),
                "max_ms": round(max(values), 2),
                "hits": found.get(text, 0),
            }
            for text, values in per_query.items()
            if values
        },
    }


def query_plans(store: Archive, rooms: list[str], queries: list[str]) -> list[str]:
    """EXPLAIN QUERY PLAN of the SQL Archive.search runs for the first query of a class."""
    from chat.search import parse

    query = parse(queries[0])
    db = store.connection()
    seen: list[str] = []
    db.set_trace_callback(seen.append)
    try:
        store.search(
            [query.room] if query.room else rooms,
            list(query.long_terms),
            list(query.short_terms),
            query.author,
            None,
            LIMIT,
        )
    finally:
        db.set_trace_callback(None)
    sql = next(s for s in seen if s.lstrip().upper().startswith("SELECT"))
    return [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql)]


def match_counts(db: sqlite3.Connection, queries: list[str]) -> dict[str, dict[str, int]]:
    """How many rows each term matches in its index (what a search may have to walk)."""
    from chat.search import parse

    counts: dict[str, dict[str, int]] = {}
    for text in queries:
        query = parse(text)
        per: dict[str, int] = {}
        for term in query.long_terms:
            (per[term],) = db.execute(
                "SELECT count(*) FROM grams WHERE grams MATCH ?", (_phrase(term),)
            ).fetchone()
        for term in query.short_terms:
            (per[term],) = db.execute(
                "SELECT count(*) FROM words WHERE words MATCH ?", (_phrase(term),)
            ).fetchone()
        counts[text] = per
    return counts


def scenario_search(args: argparse.Namespace) -> dict[str, Any]:
    path = Path(args.db)
    meta_path = path.with_suffix(".json")
    meta: dict[str, Any] | None = None
    if meta_path.exists() and path.exists() and not args.regenerate:
        meta = json.loads(meta_path.read_text())
        if meta.get("messages") != args.messages or meta.get("batch") != args.batch:
            meta = None
    if meta is None:
        print(f"generating {args.messages:,} messages into {path}", flush=True)
        meta = generate(path, args.messages, args.batch, seed=1)
        meta_path.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    else:
        print(f"using the cached archive {path} ({meta['messages']:,} messages)", flush=True)
    rooms = list(meta["room_sizes"])
    store = Archive(path)
    counter = sqlite3.connect(path)
    classes = query_classes(meta)
    results: list[dict[str, Any]] = []
    warm = hits_of(store.search(rooms, ["meeting"], [], None, None, LIMIT))  # warm up
    assert warm
    quiet = wait_quiet()
    for name, about, queries in classes:
        second_page = name.startswith("page 2")
        window = Load()
        measured = run_class(store.search, rooms, queries, args.runs, second_page, args.budget)
        machine_cores, own_cores = window.cores()
        measured["other_processes_cores"] = round(machine_cores - own_cores, 2)
        plan = query_plans(store, rooms, queries)
        entry = {
            "class": name,
            "about": about,
            "queries": queries,
            "plan": plan,
            "matches": match_counts(counter, queries),
            **measured,
        }
        results.append(entry)
        print(
            f"  {name:42} p50 {measured['p50_ms']:8.2f}  p95 {measured['p95_ms']:8.2f}  "
            f"p99 {measured['p99_ms']:8.2f} ms  ({measured['runs']} runs, "
            f"{measured['pages_cut_short']} cut short)",
            flush=True,
        )
    proposals = measure_proposals(path, rooms, classes, results, args)
    counter.close()
    store.close()
    result = {
        "scenario": "search",
        "machine": machine(),
        "archive": {k: v for k, v in meta.items() if k != "batch_rates"},
        "insert_rate_by_batch": meta.get("batch_rates", []),
        "quiet_before_queries": quiet,
        "classes": results,
        "proposals": proposals,
        "columns_copy": COPY_BUILT,
    }
    print()
    print(
        table(
            [
                "query class",
                "example",
                "runs",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
                "pages cut short",
                "other load (cores)",
                "< 50 ms p95",
            ],
            [
                [
                    r["class"],
                    f"`{r['queries'][0]}`",
                    r["runs"],
                    fmt(r["p50_ms"], 2),
                    fmt(r["p95_ms"], 2),
                    fmt(r["p99_ms"], 2),
                    fmt(r["max_ms"], 1),
                    r["pages_cut_short"],
                    r["other_processes_cores"],
                    "yes" if r["p95_ms"] < 50 else "**no**",
                ]
                for r in results
            ],
        )
    )
    if proposals:
        print()
        print(
            table(
                [
                    "proposal",
                    "query class",
                    "as is p50 / p95 ms",
                    "proposed p50 / p95 ms",
                    "same hits",
                ],
                [
                    [
                        p["proposal"],
                        p["class"],
                        f"{fmt(p['as_is_p50_ms'], 2)} / {fmt(p['as_is_p95_ms'], 2)}",
                        f"{fmt(p['proposed']['p50_ms'], 2)} / {fmt(p['proposed']['p95_ms'], 2)}",
                        "yes" if p["same_hits"] else "**no**",
                    ]
                    for p in proposals
                ],
            )
        )
    return result


class WindowedArchive(Archive):
    """Proposal 1 for chat/archive.py: a query that mixes long and short terms reads the word
    index one window of row ids at a time, newest first, the window growing 4x each time, so
    the `m.id IN (SELECT rowid FROM words ...)` list holds one window's matches, not every
    message that has the short term. Row ids are milliseconds x SLOTS, so the first window
    is the newest week. Same hits, same order (both ways read newest first).

    When the long terms are rare (a probe finds at most RARE matches), each of their matches
    is checked against the word index instead (`EXISTS (SELECT 1 FROM words WHERE words
    MATCH ? AND words.rowid = m.id)`, one look-up each): a rare word with a common short one
    would otherwise walk the short word's matches window after window."""

    FIRST_WINDOW = 7 * 86_400_000 * SLOTS
    GROWTH = 4
    RARE = 1000

    def proposed(
        self,
        rooms: Sequence[str],
        long_terms: Sequence[str],
        short_terms: Sequence[str],
        author: str | None,
        before_row: int | None,
        limit: int,
    ) -> Any:
        if not (rooms and long_terms and short_terms):
            return self.search(rooms, long_terms, short_terms, author, before_row, limit)
        db = self.connection()
        long_match = " AND ".join(_phrase(term) for term in long_terms)
        short_match = " AND ".join(_phrase(term) for term in short_terms)
        (count,) = db.execute(
            "SELECT count(*) FROM (SELECT 1 FROM grams WHERE grams MATCH ? LIMIT ?)",
            (long_match, self.RARE + 1),
        ).fetchone()
        if count <= self.RARE:
            return self._each_checked(rooms, long_match, short_match, author, before_row, limit)
        low_end, high_end = db.execute(
            "SELECT (SELECT min(id) FROM messages), (SELECT max(id) FROM messages)"
        ).fetchone()
        if low_end is None:
            return []
        high = high_end + 1 if before_row is None else min(before_row, high_end + 1)
        span = self.FIRST_WINDOW
        conditions = [
            "grams MATCH ?",
            "grams.rowid >= ?",
            "grams.rowid < ?",
            f"m.room IN ({','.join('?' * len(rooms))})",
            "m.id IN (SELECT rowid FROM words WHERE words MATCH ? AND rowid >= ? AND rowid < ?)",
        ]
        if author is not None:
            conditions.append("(m.who = ? OR m.who LIKE ? ESCAPE '\\')")
        sql = (
            "SELECT m.id, m.room, m.ms, m.seq, m.fields, m.state"
            " FROM grams JOIN messages m ON m.id = grams.rowid"
            f" WHERE {' AND '.join(conditions)} ORDER BY grams.rowid DESC LIMIT ?"
        )
        hits: list[Hit] = []
        while len(hits) < limit and high > low_end:
            low = max(high - span, low_end)
            args: list[object] = [long_match, low, high, *rooms, short_match, low, high]
            if author is not None:
                args += [author, _like_prefix(author + " ")]
            rows = db.execute(sql, (*args, limit - len(hits)))
            hits += [
                Hit(row, _entry(room, ms, seq, fields, state))
                for row, room, ms, seq, fields, state in rows
            ]
            high = low
            span *= self.GROWTH
        return hits

    def _each_checked(
        self,
        rooms: Sequence[str],
        long_match: str,
        short_match: str,
        author: str | None,
        before_row: int | None,
        limit: int,
    ) -> list[Hit]:
        conditions = [
            "grams MATCH ?",
            f"m.room IN ({','.join('?' * len(rooms))})",
            "EXISTS (SELECT 1 FROM words WHERE words MATCH ? AND words.rowid = m.id)",
        ]
        args: list[object] = [long_match, *rooms, short_match]
        if author is not None:
            conditions.append("(m.who = ? OR m.who LIKE ? ESCAPE '\\')")
            args += [author, _like_prefix(author + " ")]
        if before_row is not None:
            conditions.append("grams.rowid < ?")
            args.append(before_row)
        sql = (
            "SELECT m.id, m.room, m.ms, m.seq, m.fields, m.state"
            " FROM grams JOIN messages m ON m.id = grams.rowid"
            f" WHERE {' AND '.join(conditions)} ORDER BY grams.rowid DESC LIMIT ?"
        )
        return [
            Hit(row, _entry(room, ms, seq, fields, state))
            for row, room, ms, seq, fields, state in self.connection().execute(sql, (*args, limit))
        ]


def code(value: str) -> str:
    """Three Private Use Area characters standing for an author or a room in the indexes:
    one trigram, one unicode61 token, never in any text."""
    digest = int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big")
    out = []
    for _ in range(3):
        digest, index = divmod(digest, 6400)
        out.append(chr(0xE000 + index))
    return "".join(out)


class ColumnsArchive:
    """Proposal 2, measured on a copy of both indexes (--columns-copy): `grams` and `words`
    get two more columns, `who` and `room`, holding a code (`code()`) of the message's folded
    author name and of its room. `from:` resolves the name to the authors it means today
    (who = name, or who LIKE 'name %', read from the (who, id) index) and `in:` to its room,
    and both go into the MATCH: FTS5 intersects the doclists instead of joining every match
    of the term to `messages` to test `who` and `room`."""

    def __init__(self, index_path: Path, archive_path: Path) -> None:
        self.db = sqlite3.connect(f"file:{index_path}?mode=ro", uri=True)
        self.db.execute("ATTACH ? AS archive", (f"file:{archive_path}?mode=ro",))

    def authors(self, author: str) -> list[str]:
        """The folded names `from:author` means: itself, and those starting "author "."""
        found = [
            who
            for (who,) in self.db.execute(
                "SELECT who FROM archive.messages WHERE who = ? LIMIT 1", (author,)
            )
        ]
        low, high = author + " ", author + "!"
        while len(found) < 100:
            (name,) = self.db.execute(
                "SELECT min(who) FROM archive.messages WHERE who >= ? AND who < ?", (low, high)
            ).fetchone()
            if name is None:
                break
            found.append(name)
            low = name + "\x00"
        return found

    def search(
        self,
        rooms: Sequence[str],
        long_terms: Sequence[str],
        short_terms: Sequence[str],
        author: str | None,
        before_row: int | None,
        limit: int,
    ) -> list[Hit]:
        table = "grams" if long_terms else "words"
        terms = long_terms or short_terms
        match = [f"text : ({' AND '.join(_phrase(term) for term in terms)})"]
        if author is not None:
            names = self.authors(author)
            if not names:
                return []
            match.append(f"who : ({' OR '.join(_phrase(code(name)) for name in names)})")
        conditions = [f"{table} MATCH ?"]
        args: list[object] = []
        if len(rooms) == 1:
            match.append(f"room : {_phrase(code(rooms[0]))}")
        else:
            conditions.append(f"m.room IN ({','.join('?' * len(rooms))})")
            args += rooms
        args.insert(0, " AND ".join(match))
        if long_terms and short_terms:
            conditions.append("m.id IN (SELECT rowid FROM words WHERE words MATCH ?)")
            args.append(" AND ".join(_phrase(term) for term in short_terms))
        if before_row is not None:
            conditions.append(f"{table}.rowid < ?")
            args.append(before_row)
        sql = (
            "SELECT m.id, m.room, m.ms, m.seq, m.fields, m.state"
            f" FROM {table} JOIN archive.messages m ON m.id = {table}.rowid"
            f" WHERE {' AND '.join(conditions)} ORDER BY {table}.rowid DESC LIMIT ?"
        )
        rows = self.db.execute(sql, (*args, limit))
        return [
            Hit(row, _entry(room, ms, seq, fields, state))
            for row, room, ms, seq, fields, state in rows
        ]

    def close(self) -> None:
        self.db.close()


def build_columns_copy(archive_path: Path, index_path: Path) -> dict[str, Any]:
    """Both indexes again, with `who` and `room` code columns, from the archive's messages
    (folded as chat/archive.py folds)."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(index_path) + suffix).unlink(missing_ok=True)
    started = time.perf_counter()
    db = sqlite3.connect(index_path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE VIRTUAL TABLE grams USING fts5 (text, who, room, content='', tokenize='trigram')"
    )
    db.execute(
        "CREATE VIRTUAL TABLE words USING fts5"
        " (text, who, room, content='', tokenize='unicode61 remove_diacritics 2')"
    )
    source = sqlite3.connect(f"file:{archive_path}?mode=ro", uri=True)
    batch: list[tuple[int, str, str, str]] = []

    def flush() -> None:
        db.execute("BEGIN")
        for row, room, who, text in batch:
            db.execute(
                "INSERT INTO grams (rowid, text, who, room) VALUES (?, ?, ?, ?)",
                (row, folding.fold(text), code(who), code(room)),
            )
            db.execute(
                "INSERT INTO words (rowid, text, who, room) VALUES (?, ?, ?, ?)",
                (row, folding.spaced(text), code(who), code(room)),
            )
        db.execute("COMMIT")
        batch.clear()

    for row, room, who, state in source.execute(
        "SELECT id, room, who, state FROM messages ORDER BY id"
    ):
        text = _body(state)
        if text:
            batch.append((row, room, who, text))
        if len(batch) == 5000:
            flush()
    flush()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    source.close()
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "index_bytes": index_path.stat().st_size,
    }


def measure_proposals(
    path: Path,
    rooms: list[str],
    classes: list[tuple[str, str, list[str]]],
    as_is: list[dict[str, Any]],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """The proposed searches on the classes they are for; hits compared with today's."""
    from chat.search import parse

    baseline = {entry["class"]: entry for entry in as_is}
    reference = Archive(path)
    variants: list[tuple[str, SearchFunction, Callable[[str], bool]]] = []
    windowed = WindowedArchive(path)

    def mixed(text: str) -> bool:
        query = parse(text)
        return bool(query.long_terms and query.short_terms)

    variants.append(("1: windowed word-index subquery", windowed.proposed, mixed))

    def filtered(text: str) -> bool:
        query = parse(text)
        return query.author is not None or query.room is not None

    columns: ColumnsArchive | None = None
    if args.columns_copy:
        copy = Path(args.columns_copy)
        if not copy.exists():
            print(f"building the columns copy {copy} (minutes)", flush=True)
            built = build_columns_copy(path, copy)
            COPY_BUILT.update(built)
            print(f"  built in {built['seconds']:,.0f} s", flush=True)
        COPY_BUILT["copy_bytes"] = copy.stat().st_size
        columns = ColumnsArchive(copy, path)
        variants.append(("2: from:/in: as FTS columns (copy)", columns.search, filtered))
    found: list[dict[str, Any]] = []
    for label, search, applies in variants:
        for name, _, queries in classes:
            if not all(applies(text) for text in queries):
                continue
            second_page = name.startswith("page 2")
            measured = run_class(search, rooms, queries, args.runs, second_page, args.budget)
            same = True
            for text in queries:
                query = parse(text)
                call = (
                    [query.room] if query.room else rooms,
                    list(query.long_terms),
                    list(query.short_terms),
                    query.author,
                    None,
                    LIMIT,
                )
                mine = [hit.row for hit in hits_of(search(*call))]
                theirs = [hit.row for hit in hits_of(complete(reference)(*call))]
                same = same and mine == theirs
            found.append(
                {
                    "proposal": label,
                    "class": name,
                    "as_is_p50_ms": baseline[name]["p50_ms"],
                    "as_is_p95_ms": baseline[name]["p95_ms"],
                    "proposed": measured,
                    "same_hits": same,
                }
            )
            print(
                f"  [{label}] {name:40} p50 {measured['p50_ms']:8.2f}  "
                f"p95 {measured['p95_ms']:8.2f} ms (as is {baseline[name]['p95_ms']:.2f}); "
                f"same hits: {same}",
                flush=True,
            )
    windowed.close()
    reference.close()
    if columns is not None:
        columns.close()
    return found


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.archive_bench", description=__doc__)
    sub = parser.add_subparsers(dest="scenario", required=True)
    arch = sub.add_parser("archiver", help="catch-up throughput and live lag")
    arch.add_argument("--messages", type=int, default=60_000)
    arch.add_argument("--rooms", type=int, default=10)
    arch.add_argument("--rate", type=float, default=2_000)
    arch.add_argument("--seconds", type=float, default=20)
    search = sub.add_parser("search", help="search latency at a million messages")
    search.add_argument("--messages", type=int, default=1_000_000)
    search.add_argument("--batch", type=int, default=5_000)
    search.add_argument(
        "--db", default=str(Path(tempfile.gettempdir()) / "archive-bench-1m.sqlite3")
    )
    search.add_argument("--regenerate", action="store_true")
    search.add_argument("--runs", type=int, default=200)
    search.add_argument("--budget", type=float, default=30.0, help="seconds per query class")
    search.add_argument(
        "--columns-copy",
        default="",
        help="also measure proposal 2 on this copy of the indexes (built if missing, ~5 min)",
    )
    child = sub.add_parser("_archiver")
    child.add_argument("url")
    child.add_argument("path")
    child.add_argument("group")
    poster = sub.add_parser("_poster")
    poster.add_argument("url")
    poster.add_argument("rooms", type=int)
    poster.add_argument("rate", type=float)
    poster.add_argument("seconds", type=float)
    poster.add_argument("seed", type=int)
    for scenario in (arch, search):
        scenario.add_argument(
            "--quiet-wait",
            type=float,
            default=300.0,
            help="seconds to wait, at most, for an idle machine before each measurement",
        )
    args = parser.parse_args(argv)
    QUIET_WAIT[0] = getattr(args, "quiet_wait", 300.0)
    if args.scenario == "_archiver":
        asyncio.run(child_archiver(args.url, args.path, args.group))
        return
    if args.scenario == "_poster":
        child_poster(args.url, args.rooms, args.rate, args.seconds, args.seed)
        return
    started = time.perf_counter()
    runner = scenario_archiver if args.scenario == "archiver" else scenario_search
    result = runner(args)
    result["commit"] = result_commit()
    result["command"] = " ".join([".venv/bin/python -m bench.archive_bench", *sys.argv[1:]])
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(f"\nraw results: {save(args.scenario, result)} ({result['wall_seconds']:,.0f} s)")


if __name__ == "__main__":
    main()
