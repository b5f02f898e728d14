"""One pub/sub connection per worker, fanned out to the local sockets' bounded queues.

    await bus.publish(channel, data)
    async with bus.subscribe(channel, ...) as sub:
        async for item in sub: ...

A subscription yields pieces (chat/localize.py: the published item as its viewer variant
reads it, made once per variant as it arrives), or a Signal: GAP after the pub/sub
connection was lost and re-made (messages may have been missed: backfill), OVERFLOW when the
consumer fell so far behind that its queue filled (close the socket; the client reconnects
and backfills).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from quart import Quart, current_app
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from chat import store
from chat.i18n import Variant
from chat.localize import TEMPLATE, Piece, make_piece, needs_variant

log = logging.getLogger("chat.bus")

# How long the reader waits for a message before it sends queued (un)subscribes.
POLL_SECONDS = 0.02


class Signal(enum.Enum):
    GAP = "gap"
    OVERFLOW = "overflow"


class Subscription:
    def __init__(self, channels: tuple[str, ...], maxsize: int, variant: Variant | None) -> None:
        self.channels = channels
        self.variant = variant
        self.queue: asyncio.Queue[Piece | Signal] = asyncio.Queue(maxsize)
        self.overflowed = False
        # Called on overflow: cancels a consumer stuck writing to a peer that stopped reading.
        self.on_overflow: Callable[[], object] | None = None

    def deliver(self, item: Piece | Signal) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            # Never block the reader for one slow socket: drop its backlog and tell it to go.
            self.overflowed = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(Signal.OVERFLOW)
            if self.on_overflow is not None:
                self.on_overflow()

    def push(self, frame: str) -> None:
        """Queue a frame made on this worker for this subscriber alone (its sidebar)."""
        self.deliver(("", None, frame))

    def take_ready(self, limit: int) -> list[Piece | Signal]:
        """Up to `limit` more items that are already queued, without waiting."""
        items: list[Piece | Signal] = []
        while len(items) < limit and not self.queue.empty():
            items.append(self.queue.get_nowait())
        return items

    def __aiter__(self) -> AsyncIterator[Piece | Signal]:
        return self

    async def __anext__(self) -> Piece | Signal:
        return await self.queue.get()


class Watcher(Protocol):
    """Told of every item published to the channels it watches, as published (no queue)."""

    def on_item(self, channel: str, item: str) -> None: ...

    def on_gap(self) -> None: ...


class Bus:
    def __init__(self, app: Quart, redis_url: str, publisher: Redis, queue_size: int) -> None:
        self._app = app
        # Own client, no silent retries: a reconnect must be seen so sockets can backfill.
        self._client = Redis.from_url(
            redis_url,
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=2,
            health_check_interval=10,
        )
        self._publisher = publisher
        self._queue_size = queue_size
        self._subs: dict[str, set[Subscription]] = {}
        self._watchers: dict[str, set[Watcher]] = {}
        self._confirmations: dict[str, list[asyncio.Future[None]]] = {}
        self._confirmed: set[str] = set()
        self._to_subscribe: set[str] = set()
        self._to_unsubscribe: set[str] = set()
        self._pubsub: PubSub | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.worker_channel = f"worker:{secrets.token_hex(8)}"
        self._echoes: dict[str, asyncio.Future[None]] = {}
        self._stopping = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bus-reader")

    async def stop(self) -> None:
        # The reader polls with a timeout and checks this flag: cancelling a task blocked
        # inside redis-py's pub/sub read can hang, so it is asked to stop instead.
        self._stopping = True
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=3)
            except TimeoutError:
                self._task.cancel()
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        await self._client.aclose()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def publish(self, channel: str, data: str) -> None:
        await self._publisher.publish(channel, data)

    @contextlib.asynccontextmanager
    async def subscribe(
        self, *channels: str, variant: Variant | None = None
    ) -> AsyncIterator[Subscription]:
        """Subscribe; on entry Redis has confirmed every channel, so nothing later is missed.

        Items reach the subscription as `variant` reads them (None: as published)."""
        sub = Subscription(channels, self._queue_size, variant)
        for channel in channels:
            self._subs.setdefault(channel, set()).add(sub)
        try:
            await self._confirm(channels)
            yield sub
        finally:
            for channel in channels:
                members = self._subs.get(channel)
                if members is not None:
                    members.discard(sub)
                    if not members:
                        del self._subs[channel]
                        self._drop_if_unwanted(channel)

    def watch(self, channel: str, watcher: Watcher) -> None:
        """Hand `watcher` every item of `channel` from now on (as soon as Redis confirms)."""
        if not self._wanted(channel):
            self._to_subscribe.add(channel)
        self._watchers.setdefault(channel, set()).add(watcher)

    def unwatch(self, channel: str, watcher: Watcher) -> None:
        watchers = self._watchers.get(channel)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[channel]
                self._drop_if_unwanted(channel)

    def _wanted(self, channel: str) -> bool:
        return channel in self._subs or channel in self._watchers

    def _drop_if_unwanted(self, channel: str) -> None:
        if not self._wanted(channel):
            self._confirmed.discard(channel)
            self._to_unsubscribe.add(channel)

    async def roundtrip(self, timeout: float = 1.0) -> bool:
        """Publish to this worker's own channel and wait to hear it back (readiness)."""
        token = secrets.token_hex(8)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._echoes[token] = future
        try:
            async with asyncio.timeout(timeout):
                await self.publish(self.worker_channel, token)
                await future
            return True
        except (TimeoutError, *store.REDIS_DOWN):
            return False
        finally:
            self._echoes.pop(token, None)

    async def confirm(self, channels: list[str]) -> None:
        """Wait until Redis has confirmed these (watched or subscribed) channels."""
        await self._confirm(tuple(channel for channel in channels if self._wanted(channel)))

    async def _confirm(self, channels: tuple[str, ...]) -> None:
        """Wait until the reader has subscribed to every channel and Redis has confirmed it."""
        loop = asyncio.get_running_loop()
        waits = []
        for channel in channels:
            if channel not in self._confirmed:
                future: asyncio.Future[None] = loop.create_future()
                self._confirmations.setdefault(channel, []).append(future)
                self._to_subscribe.add(channel)
                waits.append(future)
        if waits:
            await asyncio.wait_for(asyncio.gather(*waits), timeout=5)

    async def _send_pending_commands(self) -> None:
        # Only the reader task touches the pub/sub connection: redis-py's PubSub is not
        # safe to use from two tasks at once (a concurrent UNSUBSCRIBE can hang).
        assert self._pubsub is not None
        subscribe = [c for c in self._to_subscribe if self._wanted(c)]
        unsubscribe = [c for c in self._to_unsubscribe if not self._wanted(c)]
        self._to_subscribe.clear()
        self._to_unsubscribe.clear()
        if subscribe:
            await self._pubsub.subscribe(*subscribe)
        if unsubscribe:
            await self._pubsub.unsubscribe(*unsubscribe)

    async def _run(self) -> None:
        delay = 0.2
        first = True
        while not self._stopping:
            try:
                await self._connect()
                if not first:
                    log.info("pub/sub reconnected; %d channels resubscribed", len(self._subs))
                    self._broadcast(Signal.GAP)
                first, delay = False, 0.2
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if self._connected.is_set():
                    log.warning("pub/sub connection lost: %s", error)
                self._connected.clear()
                self._confirmed.clear()  # subscribers waiting in _confirm are served on reconnect
                for _ in range(int(delay * 10)):
                    if self._stopping:
                        return
                    await asyncio.sleep(0.1)
                delay = min(delay * 2, 5.0)

    async def _connect(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        self._pubsub = self._client.pubsub()
        self._to_subscribe.clear()
        self._to_unsubscribe.clear()
        channels = [self.worker_channel, *{*self._subs, *self._watchers}]
        await self._pubsub.subscribe(*channels)
        remaining = set(channels)
        while remaining:
            message = await self._pubsub.get_message(timeout=5)
            if message is None:
                raise ConnectionError("no subscribe confirmation within 5 s")
            if message["type"] == "subscribe":
                remaining.discard(message["channel"])
        self._confirmed.update(channel for channel in channels if self._wanted(channel))
        for channel in channels:
            for future in self._confirmations.pop(channel, []):
                if not future.done():
                    future.set_result(None)
        self._connected.set()

    async def _read(self) -> None:
        assert self._pubsub is not None
        while not self._stopping:
            if self._to_subscribe or self._to_unsubscribe:
                await self._send_pending_commands()
            message = await self._pubsub.get_message(timeout=POLL_SECONDS)
            if message is not None:
                await self._dispatch(message)

    async def _dispatch(self, message: dict[str, Any]) -> None:
        kind, channel = message["type"], message["channel"]
        if kind == "subscribe":
            if self._wanted(channel):
                self._confirmed.add(channel)
            for future in self._confirmations.pop(channel, []):
                if not future.done():
                    future.set_result(None)
        elif kind == "message":
            if channel == self.worker_channel:
                echo = self._echoes.get(message["data"])
                if echo is not None and not echo.done():
                    echo.set_result(None)
                return
            item: str = message["data"]
            for watcher in tuple(self._watchers.get(channel, ())):
                watcher.on_item(channel, item)
            per_variant = needs_variant(item)
            pieces: dict[Variant | None, Piece] = {}
            for sub in tuple(self._subs.get(channel, ())):
                variant = sub.variant if per_variant else None
                piece = pieces.get(variant)
                if piece is None:  # once per message and viewer variant on this worker
                    if TEMPLATE in item:  # rendering words needs the app's templates
                        async with self._app.app_context():
                            piece = await make_piece(item, variant)
                    else:
                        piece = await make_piece(item, variant)
                    pieces[variant] = piece
                sub.deliver(piece)

    def _broadcast(self, signal: Signal) -> None:
        for watcher in {w for watchers in self._watchers.values() for w in watchers}:
            watcher.on_gap()
        seen: set[int] = set()
        for members in self._subs.values():
            for sub in members:
                if id(sub) not in seen:
                    seen.add(id(sub))
                    sub.deliver(signal)


def init_app(app: Quart) -> None:
    @app.before_serving
    async def start_bus() -> None:
        bus = Bus(app, app.config["REDIS_URL"], store.redis(app), app.config["WS_QUEUE_SIZE"])
        app.extensions["bus"] = bus
        await bus.start()

    @app.after_serving
    async def stop_bus() -> None:
        await app.extensions.pop("bus").stop()


def bus(app: Quart | None = None) -> Bus:
    return (app or current_app).extensions["bus"]  # type: ignore[no-any-return]
