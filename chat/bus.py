"""Pub/sub for the worker: one connection per Redis node, fanned out to local sockets' queues.

    await bus.publish(channel, data)
    async with bus.subscribe(channel, ...) as sub:
        async for item in sub: ...

Channels are sharded (SSUBSCRIBE, SPUBLISH): each lives on the node that owns its hash slot,
so a channel named with a room's hash tag lives beside the room's keys, and the post script
publishes it in the same call. On one server there is one node; on a cluster the worker keeps
one connection per primary that owns a channel it wants (store.Topology says which), however
many rooms and sockets it serves, and channels are reference-counted across its sockets.

A subscription yields pieces (chat/localize.py: the published item as its viewer variant
reads it, made once per variant as it arrives), or a Signal: GAP once a lost subscription is
back (a connection lost and re-made, a failover, a slot moved: messages may have been missed,
so backfill), OVERFLOW when the consumer fell so far behind that its queue filled (close the
socket; the client reconnects and backfills).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from quart import Quart, current_app
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from chat import store, tasks
from chat.i18n import Variant
from chat.localize import TEMPLATE, Piece, make_piece, needs_variant

log = logging.getLogger("chat.bus")

# How long a link's reader waits for a message. (Un)subscribes asked for meanwhile wake it at
# once through its wake channel; until that channel is confirmed (connecting, a slot moved) it
# polls every POLL_SECONDS instead. Polling all the time cost an idle worker 2 % of a core.
READ_SECONDS = 1.0
POLL_SECONDS = 0.02
# The longest wait between attempts to reach a node again (a failover takes a few seconds).
MAX_RETRY_SECONDS = 2.0


class Signal(enum.Enum):
    GAP = "gap"
    OVERFLOW = "overflow"


class Subscription:
    """One socket's share of the worker's channels.

    A piece goes straight to `fast` (the socket writes it at once) while nothing is queued and
    the consumer is not busy sending; otherwise it waits in a bounded queue for the consumer,
    so the order never changes. Only a socket that fell behind pays for the queue."""

    def __init__(self, channels: tuple[str, ...], maxsize: int, variant: Variant | None) -> None:
        self.channels = channels
        self.variant = variant
        self.maxsize = maxsize
        self.items: collections.deque[Piece | Signal] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self.overflowed = False
        # Set by the consumer: takes a piece now (True) or declines it (False: it queues).
        self.fast: Callable[[Piece], bool] | None = None
        self.busy = False  # the consumer is sending what it took from the queue
        # Called on overflow: cancels a consumer stuck writing to a peer that stopped reading.
        self.on_overflow: Callable[[], object] | None = None

    def deliver(self, item: Piece | Signal) -> None:
        if self.overflowed:
            return
        fast = self.fast
        if fast is not None and not self.items and not self.busy and type(item) is tuple:
            if fast(item):
                return
        self._queue(item)

    def push(self, frame: str) -> None:
        """Queue a frame made on this worker for this subscriber alone (its sidebar)."""
        if not self.overflowed:
            self._queue(("", None, frame, b""))

    def _queue(self, item: Piece | Signal) -> None:
        if len(self.items) >= self.maxsize:
            # Never block the reader for one slow socket: drop its backlog and tell it to go.
            self.overflowed = True
            self.items.clear()
            self.items.append(Signal.OVERFLOW)
            self._wake()
            if self.on_overflow is not None:
                self.on_overflow()
            return
        self.items.append(item)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take_ready(self, limit: int) -> list[Piece | Signal]:
        """Up to `limit` more items that are already queued, without waiting."""
        items: list[Piece | Signal] = []
        while len(items) < limit and self.items:
            items.append(self.items.popleft())
        return items

    def __aiter__(self) -> AsyncIterator[Piece | Signal]:
        return self

    async def __anext__(self) -> Piece | Signal:
        while not self.items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.items.popleft()


class Watcher(Protocol):
    """Told of every item published to the channels it watches, as published (no queue)."""

    def on_item(self, channel: str, item: str) -> None: ...

    def on_gap(self) -> None: ...


class Bus:
    """The worker's channels, each read through the link to the Redis node that owns it."""

    def __init__(
        self, app: Quart, topology: store.Topology, publisher: Any, queue_size: int
    ) -> None:
        self._app = app
        self.topology = topology
        self._publisher = publisher
        self._queue_size = queue_size
        self._subs: dict[str, set[Subscription]] = {}
        self._watchers: dict[str, set[Watcher]] = {}
        self._confirmations: dict[str, list[asyncio.Future[None]]] = {}
        self._confirmed: set[str] = set()
        # Channels whose subscription was lost: their readers get GAP once it is back.
        self._gapped: set[str] = set()
        self._links: dict[str, _Link] = {}
        self._route: dict[str, _Link] = {}
        self._rerouting = asyncio.Lock()
        self._reroute_task: asyncio.Task[None] | None = None
        self.worker_id = secrets.token_hex(8)
        self.worker_channel = f"worker:{{{self.worker_id}}}"
        self._echoes: dict[str, asyncio.Future[None]] = {}
        self.wakes: set[asyncio.Task[None]] = set()  # links' wake publishes in flight
        self.stopping = False
        self.stopped = False

    async def start(self) -> None:
        self._want(self.worker_channel)

    async def stop(self) -> None:
        self.stopping = True
        if self._reroute_task is not None:
            await tasks.stop(self._reroute_task)
        await asyncio.gather(*(link.stop() for link in list(self._links.values())))
        self.stopped = True  # no more wakes: the app closes the Redis client they use next
        if self.wakes:
            await asyncio.wait(list(self.wakes), timeout=2)

    def forget(self, link: _Link) -> None:
        """A link left with no channels ends."""
        if self._links.get(link.node) is link:
            del self._links[link.node]
        link.retire()

    @property
    def connected(self) -> bool:
        return bool(self._links) and all(link.connected for link in self._links.values())

    async def publish(self, channel: str, data: str) -> None:
        await self._publisher.spublish(channel, data)

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
        self._watchers.setdefault(channel, set()).add(watcher)
        self._want(channel)

    def unwatch(self, channel: str, watcher: Watcher) -> None:
        watchers = self._watchers.get(channel)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[channel]
                self._drop_if_unwanted(channel)

    def wanted(self, channel: str) -> bool:
        return channel in self._subs or channel in self._watchers or channel == self.worker_channel

    def _wanted_channels(self) -> set[str]:
        return {*self._subs, *self._watchers, self.worker_channel}

    def _want(self, channel: str) -> None:
        """Route a wanted channel to its node's link (which subscribes it), once."""
        if channel in self._route:
            return
        try:
            node = self.topology.owner(channel)
        except Exception as error:  # the cluster's map is not known yet: the next reroute
            log.warning("pub/sub: no node known for %s yet: %s", channel, error)
            self.schedule_reroute()
            return
        link = self._links.get(node)
        if link is None:
            link = self._links[node] = _Link(self, node)
            link.start()
        self._route[channel] = link
        link.add(channel)

    def _drop_if_unwanted(self, channel: str) -> None:
        if not self.wanted(channel):
            self._confirmed.discard(channel)
            self._gapped.discard(channel)
            self._confirmations.pop(channel, None)  # waits that timed out
            link = self._route.pop(channel, None)
            if link is not None:
                link.remove(channel)

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
        await self._confirm(tuple(channel for channel in channels if self.wanted(channel)))

    async def _confirm(self, channels: tuple[str, ...]) -> None:
        """Wait until every channel's link has subscribed it and Redis has confirmed it."""
        loop = asyncio.get_running_loop()
        waits = []
        for channel in channels:
            if channel not in self._confirmed:
                future: asyncio.Future[None] = loop.create_future()
                self._confirmations.setdefault(channel, []).append(future)
                waits.append(future)
                self._want(channel)
        if waits:
            await asyncio.wait_for(asyncio.gather(*waits), timeout=5)

    def on_confirmed(self, channels: list[str]) -> None:
        """Redis has confirmed these channels on their link: wake waiters, tell of gaps."""
        gapped: set[str] = set()
        for channel in channels:
            if self._route.get(channel) is None or not self.wanted(channel):
                continue
            self._confirmed.add(channel)
            for future in self._confirmations.pop(channel, []):
                if not future.done():
                    future.set_result(None)
            if channel in self._gapped:
                self._gapped.discard(channel)
                gapped.add(channel)
        if gapped:
            self._signal_gap(gapped)

    def on_lost(self, channels: list[str]) -> None:
        """These channels' subscription is gone (connection lost, slot moved): until they are
        confirmed again, messages may be missed, so their readers backfill after."""
        for channel in channels:
            if channel in self._confirmed:
                self._confirmed.discard(channel)
                self._gapped.add(channel)

    def schedule_reroute(self) -> None:
        if self.stopping or (self._reroute_task is not None and not self._reroute_task.done()):
            return
        self._reroute_task = asyncio.create_task(self._reroute_until_routed(), name="bus-reroute")

    async def _reroute_until_routed(self) -> None:
        """Channels no node serves yet (the cluster unreachable at start, a slot uncovered)
        have no link whose errors would retry them: try again until each has one."""
        delay = 0.2
        while not self.stopping:
            await self.reroute()
            wanted = self._wanted_channels()
            if all(channel in self._route for channel in wanted):
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)

    async def reroute(self) -> None:
        """Ask Redis where every channel lives now and move those that changed node."""
        async with self._rerouting:
            try:
                await self.topology.refresh()
            except Exception as error:
                log.warning("pub/sub: cannot read the cluster's map: %s", error)
                return
            wanted = self._wanted_channels()
            for channel in wanted:
                link = self._route.get(channel)
                try:
                    node = self.topology.owner(channel)
                except Exception:  # noqa: S112 - a slot nobody serves yet: the next reroute
                    continue
                if link is not None and link.node == node:
                    if channel not in self._confirmed:  # dropped by the server: ask again
                        link.add(channel)
                    continue
                if link is not None:
                    self.on_lost([channel])
                    self._route.pop(channel, None)
                    link.remove(channel)
                    log.info("pub/sub: %s moved from %s to %s", channel, link.node, node)
                self._want(channel)

    async def dispatch(self, message: dict[str, Any]) -> None:
        channel = message["channel"]
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

    def _signal_gap(self, channels: set[str]) -> None:
        watchers = {w for channel in channels for w in self._watchers.get(channel, ())}
        for watcher in watchers:
            watcher.on_gap()
        subs = {id(s): s for channel in channels for s in self._subs.get(channel, ())}
        for sub in subs.values():
            sub.deliver(Signal.GAP)


class _Link:
    """One Redis node's pub/sub connection: subscribes the channels routed to it, reads them.

    Only its own task touches the connection: redis-py's PubSub is not safe to use from two
    tasks at once (a concurrent unsubscribe can hang)."""

    def __init__(self, bus: Bus, node: str) -> None:
        self.bus = bus
        self.node = node
        self.channels: set[str] = set()  # routed here: subscribed, or about to be
        self.pending: set[str] = set()  # to send SSUBSCRIBE for
        self.leaving: set[str] = set()  # to send SUNSUBSCRIBE for
        self.dropped: set[str] = set()  # unsubscribed by the server (slot moved)
        self.connected = False
        # A channel of this node's own that only this link reads: publishing to it wakes the
        # reader so that it sends what add() and remove() asked for (see READ_SECONDS).
        self.wake_channel: str | None = None
        self.wake_ready = False  # Redis confirmed it: the reader may block for READ_SECONDS
        self._waking: asyncio.Task[None] | None = None
        self._retired = False
        self._task: asyncio.Task[None] | None = None
        self._client: Redis | None = None
        self._pubsub: PubSub | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"bus-link-{self.node}")

    def add(self, channel: str) -> None:
        self.channels.add(channel)
        self.dropped.discard(channel)
        self.leaving.discard(channel)
        self.pending.add(channel)
        self._wake()

    def remove(self, channel: str) -> None:
        self.channels.discard(channel)
        self.pending.discard(channel)
        if channel in self.dropped:  # the server unsubscribed it already (and would answer
            self.dropped.discard(channel)  # MOVED: the slot is no longer its)
        else:
            self.leaving.add(channel)
        self._wake()

    def _wake(self) -> None:
        """Have the reader come round now (once for a burst of requests)."""
        if (
            self.wake_ready
            and not self.bus.stopped
            and (self._waking is None or self._waking.done())
        ):
            self._waking = asyncio.create_task(self._publish_wake(), name="bus-wake")
            self.bus.wakes.add(self._waking)
            self._waking.add_done_callback(self.bus.wakes.discard)

    async def _publish_wake(self) -> None:
        assert self.wake_channel is not None
        try:
            await self.bus.publish(self.wake_channel, "")
        except Exception as error:  # the reader comes round within READ_SECONDS anyway
            log.debug("pub/sub: could not wake the reader for %s: %s", self.node, error)

    def _find_wake_channel(self) -> str | None:
        """A channel of this worker's that hashes to a slot this node serves."""
        for n in range(4096):
            channel = f"wake:{{{self.bus.worker_id}-{n}}}"
            try:
                if self.bus.topology.owner(channel) == self.node:
                    return channel
            except Exception:  # the cluster's map is not known: poll
                return None
        return None

    def retire(self) -> None:
        """End the task once it is free (it may be the one asking)."""
        self._retired = True

    async def stop(self) -> None:
        # The reader polls with a timeout and checks the flag: cancelling a task blocked
        # inside redis-py's pub/sub read can hang, so it is asked to stop instead.
        self._retired = True
        self._wake()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=3)
            except TimeoutError:
                await tasks.stop(self._task)
        await self._close()

    def _done(self) -> bool:
        return self._retired or self.bus.stopping

    async def _run(self) -> None:
        delay = 0.2
        try:
            while not self._done():
                try:
                    await self._connect()
                    delay = 0.2
                    await self._read()
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    if self.connected:
                        log.warning("pub/sub connection to %s lost: %s", self.node, error)
                    self.connected = False
                    self.bus.on_lost(list(self.channels))
                    for _ in range(int(delay * 10)):
                        if self._done():
                            return
                        await asyncio.sleep(0.1)
                    delay = min(delay * 2, MAX_RETRY_SECONDS)
                    # A failover or a resharding may have given our slots to another node.
                    await self.bus.reroute()
                    if not self.channels:
                        self.bus.forget(self)
        finally:
            self.connected = False
            await self._close()

    async def _close(self) -> None:
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _connect(self) -> None:
        await self._close()
        self._client = self.bus.topology.client(self.node)
        self._pubsub = self._client.pubsub()
        self.leaving.clear()
        self.dropped.clear()
        self.pending = set(self.channels)
        self.wake_ready = False
        self.wake_channel = self._find_wake_channel()
        if self.wake_channel is not None:
            await self._pubsub.ssubscribe(self.wake_channel)
        await self._send()
        self.connected = True

    async def _send(self) -> None:
        assert self._pubsub is not None
        subscribe = sorted(c for c in self.pending if c in self.channels)
        unsubscribe = sorted(c for c in self.leaving if c not in self.channels)
        self.pending.clear()
        self.leaving.clear()
        # A cluster node refuses one command naming channels of several slots.
        for group in self.bus.topology.by_slot(subscribe):
            await self._pubsub.ssubscribe(*group)
        for group in self.bus.topology.by_slot(unsubscribe):
            await self._pubsub.sunsubscribe(*group)

    async def _read(self) -> None:
        assert self._pubsub is not None
        # Confirmations that arrive together (a reconnect resubscribes every channel) are
        # passed on together, so a socket watching several of them gets one GAP, not one each.
        confirmed: list[str] = []
        while not self._done():
            if self.pending or self.leaving:
                await self._send()
            if not self.channels:
                self.bus.forget(self)
                return
            wait = 0 if confirmed else READ_SECONDS if self.wake_ready else POLL_SECONDS
            message = await self._pubsub.get_message(timeout=wait)
            kind = message["type"] if message is not None else None
            if confirmed and kind != "ssubscribe":
                self.bus.on_confirmed(confirmed)
                confirmed = []
            if message is None:
                continue
            channel = message["channel"]
            if channel == self.wake_channel:
                if kind == "ssubscribe":
                    self.wake_ready = True
                elif kind == "sunsubscribe":  # its slot moved: poll until the next connect
                    self.wake_ready = False
                continue
            if channel not in self.channels:
                continue  # left this node meanwhile
            if kind == "smessage":
                await self.bus.dispatch(message)
            elif kind == "ssubscribe":
                confirmed.append(channel)
            elif kind == "sunsubscribe":
                # Not asked for (the channel is still routed here): its slot has moved.
                log.info("pub/sub: %s unsubscribed by %s (slot moved)", channel, self.node)
                self.dropped.add(channel)
                self.bus.on_lost([channel])
                self.bus.schedule_reroute()


def init_app(app: Quart) -> None:
    @app.before_serving
    async def start_bus() -> None:
        bus = Bus(app, store.topology(app), store.redis(app), app.config["WS_QUEUE_SIZE"])
        app.extensions["bus"] = bus
        await bus.start()

    async def stop_bus() -> None:
        await app.extensions.pop("bus").stop()

    # Quart runs these in the order they were added: the bus stops (its last wakes published)
    # before chat/store.py closes the Redis client.
    app.after_serving_funcs.insert(0, stop_bus)


def bus(app: Quart | None = None) -> Bus:
    return (app or current_app).extensions["bus"]  # type: ignore[no-any-return]
