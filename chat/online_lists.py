"""A room's Online list as a new socket is sent it: rendered once per worker, room and variant.

Every socket that opens a room is sent who is online (blueprints/live.py). Made for each
socket, that cost O(people in the room) each time: every profile read, up to ONLINE_SHOWN
names formatted. A big room reconnecting after a restart paid it once per socket. The worker
now keeps the frame per room and viewer variant until the list changes. Every change goes out
on the room's channel (an arrival or departure, a rename: chat/live_room.py), which this cache
watches while the worker has sockets in the room; an entry is used for MAX_AGE_SECONDS at most
in any case (a deleted account leaves the list without a notice).

A socket subscribes to its room before it asks for the list, so a change published after the
frame was read reaches it as a notice of its own; a change seen while the frame was being made
keeps that frame out of the cache, and sockets that arrive after it get a new one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

from quart import Quart

from chat import bus as bus_module
from chat import keys
from chat.i18n import Variant
from chat.localize import TEMPLATE
from chat.messages import room_channel

MAX_AGE_SECONDS = 5.0
# The published templates that carry a new Online list (chat/live_room.py).
CHANGES = frozenset({"rooms/_presence_frame.html", "rooms/_online.html"})


class OnlineLists:
    """This worker's Online list frames (a bus Watcher of the rooms it has them for)."""

    def __init__(self, app: Quart) -> None:
        self.app = app
        self.frames: dict[str, dict[Variant | None, tuple[float, str]]] = {}
        self.versions: dict[str, int] = {}  # a room's changes seen; watched while listed
        # Frames being made, with the room's version they started at: sockets arriving
        # together wait for one render instead of each making their own.
        self.making: dict[tuple[str, Variant | None], tuple[int, asyncio.Task[str]]] = {}

    async def frame(
        self, slug: str, variant: Variant | None, render: Callable[[], Awaitable[str]]
    ) -> str:
        started = time.monotonic()
        cached = self.frames.get(slug, {}).get(variant)
        if cached is not None and started - cached[0] < MAX_AGE_SECONDS:
            return cached[1]
        if slug not in self.versions:
            self.versions[slug] = 0
            bus_module.bus(self.app).watch(room_channel(slug), self)
        version, key = self.versions[slug], (slug, variant)
        making = self.making.get(key)
        if making is None or making[0] != version:  # none, or begun before a change
            task = asyncio.ensure_future(self._make(slug, variant, version, started, render))
            making = self.making[key] = (version, task)
            task.add_done_callback(lambda done: self._made(key, done))
        # Shielded: one waiting socket that closes must not cancel the others' frame.
        return await asyncio.shield(making[1])

    async def _make(
        self,
        slug: str,
        variant: Variant | None,
        version: int,
        started: float,
        render: Callable[[], Awaitable[str]],
    ) -> str:
        html = await render()
        if self.versions.get(slug) == version:  # nothing changed meanwhile
            self.frames.setdefault(slug, {})[variant] = (started, html)
        return html

    def _made(self, key: tuple[str, Variant | None], task: asyncio.Task[str]) -> None:
        if self.making.get(key, (0, None))[1] is task:
            del self.making[key]
        if not task.cancelled():
            task.exception()  # retrieved: a failed render is each waiter's to handle

    def forget(self, slug: str) -> None:
        """The worker's last socket in the room closed: stop watching it."""
        self.frames.pop(slug, None)
        if self.versions.pop(slug, None) is not None:
            bus_module.bus(self.app).unwatch(room_channel(slug), self)

    # chat/bus.py Watcher
    def on_item(self, channel: str, item: str) -> None:
        if not item.startswith("\n" + TEMPLATE):
            return  # a message (the usual case)
        try:
            template = json.loads(item[2:]).get("template")
        except ValueError:
            return
        if template in CHANGES:
            self._changed(keys.room_of(channel))

    def on_gap(self) -> None:
        """Changes may have been missed while pub/sub was down."""
        for slug in self.versions:
            self._changed(slug)

    def _changed(self, slug: str) -> None:
        if slug in self.versions:
            self.versions[slug] += 1
            self.frames.pop(slug, None)


def init_app(app: Quart) -> None:
    app.extensions["online_lists"] = OnlineLists(app)


def of(app: Quart) -> OnlineLists:
    return app.extensions["online_lists"]  # type: ignore[no-any-return]
