"""One load-generator process: many websocket clients on one asyncio loop.

The parent (bench/loadgen.py) starts several of these so the generator uses both cores,
and talks to each over a multiprocessing Pipe: "ready" after connecting, then commands.
Every loop is bounded in count and time; the process exits when its parent says so or
when its own deadline passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import resource
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

# A delivered message: its stream id, then the body we sent: B<step>.<sender>.<seq>.<send ns>.
# Not a changed message's new version (a reaction): those replace one, hx-swap-oob="outerHTML".
MESSAGE = re.compile(
    r'id="m-(\d+)-(\d+)" data-author="[^"]*"(?: data-mentions="[^"]*")?>'
    r'.*?<p class="body"[^>]*>B(\d+)\.(\d+)\.(\d+)\.(\d+)',
    re.S,
)
REACTIONS = ("👍", "❤️", "😂", "🎉", "😮", "🙏")
TYPING_EVERY = 3.0  # seconds, as the compose form's htmx throttle
ANY_ID = re.compile(r'id="m-(\d+)-(\d+)"')
ERRORS = ("Slow down", "Not delivered", "Not sent", "Too many open tabs", "not understood")

# Latency histogram: log buckets 2 % wide from 10 µs; merged by summing in the parent.
HIST_BASE = 1e-5
HIST_STEP = math.log(1.02)
HIST_BUCKETS = 900


def bucket(seconds: float) -> int:
    if seconds <= HIST_BASE:
        return 0
    return min(HIST_BUCKETS - 1, int(math.log(seconds / HIST_BASE) / HIST_STEP) + 1)


def bucket_value(index: int) -> float:
    return HIST_BASE * math.exp(HIST_STEP * index)


def extensions(compression: bool) -> Any:
    # Exactly Chromium's offer: "permessage-deflate; client_max_window_bits".
    if not compression:
        return None
    return [ClientPerMessageDeflateFactory(client_max_window_bits=True)]


@dataclass
class Client:
    index: int
    room: str
    cookie: str
    sender: int  # global sender number, or -1 for a reader
    local_ip: str
    ws: ClientConnection | None = None
    last_id: tuple[int, int] = (0, 0)
    seen: set[int] = field(default_factory=set)
    done_at: float | None = None
    missed: int = 0


class Generator:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.base = spec["ws_base"]
        self.compression = spec["compression"]
        self.clients = [Client(**c) for c in spec["sockets"]]
        self.deadline = time.monotonic() + spec["max_seconds"]
        self.t0 = 0.0
        self.step_seconds = float(spec.get("step_seconds", 1))
        self.received: dict[tuple[str, int], int] = Counter()
        self.dups: dict[tuple[str, int], int] = Counter()
        self.out_of_order: dict[tuple[str, int], int] = Counter()
        self.hist: dict[int, list[int]] = defaultdict(lambda: [0] * HIST_BUCKETS)
        self.timeline: dict[int, int] = Counter()
        self.sent: dict[tuple[str, int], int] = Counter()
        self.acks = 0
        self.errors: Counter[str] = Counter()
        self.closes: Counter[str] = Counter()
        self.reconnects = 0
        self.connect_failures = 0
        self.connect_seconds: list[float] = []
        self.last_receive = time.monotonic()
        self.targets: dict[str, tuple[int, int]] = {}
        self.running = True
        self.reactions: Counter[str] = Counter()  # by HTTP status

    # -- connecting ------------------------------------------------------------------------
    def url(self, client: Client, after: bool = False) -> str:
        url = f"{self.base}/rooms/{client.room}/ws"
        if after and client.last_id != (0, 0):
            url += f"?after={client.last_id[0]}-{client.last_id[1]}"
        return url

    async def open(self, client: Client, after: bool = False, attempts: int = 3) -> bool:
        for attempt in range(attempts):
            if time.monotonic() > self.deadline:
                return False
            started = time.monotonic()
            try:
                client.ws = await connect(
                    self.url(client, after),
                    additional_headers={"Cookie": client.cookie},
                    extensions=extensions(self.compression),
                    compression=None,
                    local_addr=(client.local_ip, 0),
                    open_timeout=30,
                    ping_interval=None,
                    close_timeout=2,
                    max_queue=4096,
                    max_size=2**22,
                )
            except (OSError, TimeoutError, websockets.InvalidHandshake) as error:
                self.errors[f"connect: {type(error).__name__}"] += 1
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            self.connect_seconds.append(time.monotonic() - started)
            return True
        self.connect_failures += 1
        return False

    async def open_all(self, after: bool = False, concurrency: int = 40, attempts: int = 3) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(client: Client) -> None:
            async with gate:
                if await self.open(client, after, attempts):
                    asyncio.get_running_loop().create_task(self.read(client))

        await asyncio.gather(*(one(c) for c in self.clients))

    # -- receiving -------------------------------------------------------------------------
    async def read(self, client: Client) -> None:
        ws = client.ws
        assert ws is not None
        try:
            async for frame in ws:
                self.on_frame(client, frame if isinstance(frame, str) else frame.decode())
        except websockets.ConnectionClosed:
            pass
        code = ws.close_code
        if client.ws is ws:
            client.ws = None
            if self.running and code not in (1000, None):
                self.closes[str(code)] += 1
                # As hx-ws does: reconnect and backfill after the last id seen.
                if (
                    code in (1001, 1006, 1011, 1012, 1013, 1014)
                    and time.monotonic() < self.deadline
                ):
                    self.reconnects += 1
                    await asyncio.sleep(0.5)
                    if await self.open(client, after=True):
                        await self.read(client)

    def on_frame(self, client: Client, frame: str) -> None:
        now = time.time()
        self.last_receive = time.monotonic()
        if 'id="m-' in frame:
            found = False
            for match in MESSAGE.finditer(frame):
                found = True
                ms, seq, step, sender, number, sent_ns = (int(g) for g in match.groups())
                stream_id = (ms, seq)
                key = sender * 10_000_000 + number
                if key in client.seen:
                    self.dups[(client.room, step)] += 1
                    continue
                client.seen.add(key)
                if stream_id <= client.last_id:
                    self.out_of_order[(client.room, step)] += 1
                else:
                    client.last_id = stream_id
                self.received[(client.room, step)] += 1
                self.hist[step][bucket(now - sent_ns / 1e9)] += 1
                self.timeline[int((now - self.t0) // self.step_seconds)] += 1
            if not found:  # history written by someone else (storm setup)
                for match in ANY_ID.finditer(frame):
                    stream_id = (int(match.group(1)), int(match.group(2)))
                    if stream_id > client.last_id:
                        client.last_id = stream_id
                        client.missed += 1
            target = self.targets.get(client.room)
            if target is not None and client.done_at is None and client.last_id >= target:
                client.done_at = time.monotonic()
        elif client.sender >= 0 and 'id="compose"' in frame:
            self.acks += 1
        else:
            for text in ERRORS:
                if text in frame:
                    self.errors[text] += 1

    # -- sending ---------------------------------------------------------------------------
    async def send_steps(self, client: Client, rates: list[float], senders: int, pad: str) -> None:
        seq = 0
        for step, total_rate in enumerate(rates):
            step_start = self.t0 + step * self.step_seconds
            step_end = step_start + self.step_seconds
            interval = senders / total_rate if total_rate > 0 else self.step_seconds * 2
            at = step_start + interval * (client.sender % senders) / senders
            for _ in range(int(self.step_seconds / interval) + 2):  # bounded
                if at >= step_end:
                    break
                delay = at - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                at += interval
                ws = client.ws
                if ws is None:
                    self.errors["send while disconnected"] += 1
                    continue
                seq += 1
                body = f"B{step}.{client.sender}.{seq}.{time.time_ns()} {pad}"
                cid = f"b{client.sender}-{seq:09d}"
                try:
                    await ws.send(json.dumps({"body": body, "client_id": cid}))
                except websockets.ConnectionClosed:
                    self.errors["send on closed socket"] += 1
                    continue
                self.sent[(client.room, step)] += 1

    async def type_steps(self, client: Client, seconds: float) -> None:
        """What a person typing sends: {"typing": "1"} with the draft, every 3 s."""
        end = time.monotonic() + seconds
        await asyncio.sleep(TYPING_EVERY * (client.index % 30) / 30)  # spread over the period
        while time.monotonic() < end:
            ws = client.ws
            if ws is not None:
                with contextlib.suppress(websockets.ConnectionClosed):
                    await ws.send(json.dumps({"typing": "1", "body": "draft", "client_id": "t"}))
            await asyncio.sleep(TYPING_EVERY)

    async def react_steps(self, per_second: float, seconds: float) -> None:
        """Reactions now and then, as people press them: an HTTP post per reaction."""
        if per_second <= 0:
            return
        base = self.base.replace("ws://", "http://")
        end = time.monotonic() + seconds
        number = 0
        async with httpx.AsyncClient(base_url=base, headers={"Origin": base}) as http:
            while time.monotonic() < end:
                await asyncio.sleep(1 / per_second)
                number += 1
                client = self.clients[(number * 7919) % len(self.clients)]
                if client.last_id == (0, 0):
                    continue
                emoji = REACTIONS[number % len(REACTIONS)]
                message_id = f"{client.last_id[0]}-{client.last_id[1]}"
                try:
                    response = await http.post(
                        f"/rooms/{client.room}/messages/{message_id}/react",
                        data={"on": emoji},
                        headers={"Cookie": client.cookie, "HX-Request": "true"},
                    )
                    self.reactions[str(response.status_code)] += 1
                except httpx.HTTPError as error:
                    self.errors[f"react: {type(error).__name__}"] += 1

    async def drain(self, quiet: float, limit: float) -> None:
        end = time.monotonic() + limit
        while time.monotonic() < end and time.monotonic() - self.last_receive < quiet:  # noqa: ASYNC110 - bounded poll
            await asyncio.sleep(0.1)

    async def close_all(self, concurrency: int = 500) -> None:
        self.running = False
        gate = asyncio.Semaphore(concurrency)

        async def one(client: Client) -> None:
            ws, client.ws = client.ws, None
            if ws is not None:
                async with gate:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(ws.close(), 5)

        await asyncio.gather(*(one(c) for c in self.clients))

    def report(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "pid": os.getpid(),
            "received": [[r, s, n] for (r, s), n in self.received.items()],
            "dups": [[r, s, n] for (r, s), n in self.dups.items()],
            "out_of_order": [[r, s, n] for (r, s), n in self.out_of_order.items()],
            "sent": [[r, s, n] for (r, s), n in self.sent.items()],
            "hist": {str(k): v for k, v in self.hist.items()},
            "timeline": {str(k): v for k, v in self.timeline.items()},
            "acks": self.acks,
            "errors": dict(self.errors),
            "closes": dict(self.closes),
            "reconnects": self.reconnects,
            "connect_failures": self.connect_failures,
            "connected": sum(1 for c in self.clients if c.ws is not None),
            "connected_rooms": dict(Counter(c.room for c in self.clients if c.ws is not None)),
            "connect_seconds": sorted(self.connect_seconds),
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "max_rss": usage.ru_maxrss * 1024,
            "done_seconds": sorted(
                c.done_at - self.t0 for c in self.clients if c.done_at is not None
            ),
            "missed": sum(c.missed for c in self.clients),
            "reactions": dict(self.reactions),
            "last_ids": [f"{c.last_id[0]}-{c.last_id[1]}" for c in self.clients],
        }


async def main(spec: dict[str, Any], pipe: Any) -> None:
    gen = Generator(spec)

    async def command(timeout: float) -> Any:
        ready = await asyncio.to_thread(pipe.poll, timeout)
        if not ready:
            raise TimeoutError("no command from the parent")
        return pipe.recv()

    await gen.open_all(after=False, concurrency=spec.get("connect_concurrency", 40))
    await asyncio.sleep(0.5)
    pipe.send(("ready", gen.report()))
    remaining = lambda: max(1.0, gen.deadline - time.monotonic())  # noqa: E731
    while True:
        kind, arg = await command(remaining())
        if kind == "load":
            gen.t0 = arg["t0"]
            senders = [c for c in gen.clients if c.sender >= 0]
            pad = "x" * spec.get("pad", 40)
            load_seconds = len(arg["rates"]) * gen.step_seconds
            share = float(spec.get("typing_share", 0))
            typists = [c for c in gen.clients if share and c.index % round(1 / share) == 0]
            await asyncio.gather(
                *(gen.send_steps(c, arg["rates"], arg["senders"], pad) for c in senders),
                *(gen.type_steps(c, load_seconds) for c in typists),
                gen.react_steps(float(spec.get("reactions_per_s", 0)), load_seconds),
            )
            # Read on until the last step ends: the other processes' senders may send until
            # then (at rates below one message per sender and step, this one's stop early).
            await asyncio.sleep(max(0.0, gen.t0 + load_seconds - time.time()))
            await gen.drain(quiet=5.0, limit=arg.get("drain", 10))
            pipe.send(("done", gen.report()))
        elif kind == "disconnect":
            await gen.close_all()
            pipe.send(("done", gen.report()))
        elif kind == "reconnect":
            # The storm: every client at once, each asking for what it missed.
            gen.targets = {room: tuple(target) for room, target in arg["targets"].items()}
            gen.t0 = time.monotonic()
            gen.deadline = min(gen.deadline, gen.t0 + arg.get("limit", 60))  # bounds retries too
            gen.running = True
            for c in gen.clients:
                c.missed = 0
            await gen.open_all(after=True, concurrency=arg.get("concurrency", 5000), attempts=10)
            end = time.monotonic() + arg.get("limit", 60)
            while time.monotonic() < end and any(c.done_at is None for c in gen.clients):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            pipe.send(("done", gen.report()))
            gen.deadline = time.monotonic() + 60  # time for the parent's "stop"
        elif kind == "stop":
            await gen.close_all()
            pipe.send(("done", gen.report()))
            return


def run(spec: dict[str, Any], pipe: Any) -> None:
    """Process entry point."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        asyncio.run(asyncio.wait_for(main(spec, pipe), spec["max_seconds"] + 30))
    except BaseException as error:  # report, never hang the parent
        with contextlib.suppress(Exception):
            pipe.send(("error", repr(error)))
        raise
