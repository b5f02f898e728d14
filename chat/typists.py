"""Who is typing: "Ada is typing…" for the others in the room, gone soon after they stop.

A typist's socket publishes "<person> <name>" on the room's typing channel (`{r:<slug>}:typing`) at
most once every THROTTLE_SECONDS, and "-<person>" when they send, stop (2 s without a key) or
close the tab. Nothing is stored. Each worker
watches the typing channel of every room its sockets have open (one copy per worker), keeps
who typed when, and gives each local socket its own line (everyone typing but the viewer),
built once per distinct line and viewer variant, only when that line changes: when someone
starts, sends, or has not typed for LINGER_SECONDS. A changed line rides along with the
socket's next frame, or goes alone after RIDE_SECONDS.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from markupsafe import escape
from quart import Quart

from chat import bus as bus_module
from chat import i18n, keys, moderation, store, tasks
from chat.i18n import Variant
from chat.labels import N_

log = logging.getLogger("chat.typing")

THROTTLE_SECONDS = 2.5  # a socket's typing frames are heard at most this often (htmx: 3 s)
# A typist whose "stopped" never came (their worker died) is dropped after this long; while
# typing, frames come every 3 s.
LINGER_SECONDS = 5.0
TICK_SECONDS = 0.25
RIDE_SECONDS = 0.5  # how long a changed line waits for a frame to ride along with
LINE = '<p id="typing" hx-swap-oob="innerHTML">{text}</p>'

ONE = N_("{name} is typing…")
TWO = N_("{first} and {second} are typing…")
MANY = N_("Several people are typing…")


def typing_channel(slug: str) -> str:
    return keys.room(slug, "typing")


# One round trip: nothing in a room where only admins post (for the others), at most one
# "typing" per person per period (the gate), then the publish. KEYS: the room's rules, the
# person's gate. ARGV: admin (1/0), period ms, channel, item. Returns 1 if told, else 0.
_TELL = """
if redis.call('HGET', KEYS[1], 'admins_only') == '1' and ARGV[1] ~= '1' then return 0 end
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return 1 end
redis.call('SPUBLISH', ARGV[3], ARGV[4])
return 1
"""


class Signal:
    """One socket's typing frames: "1" (a key was pressed; htmx sends it at most every 3 s)
    and "0" (no key for 2 s). The room hears "typing" at most once per THROTTLE_SECONDS per
    person, however many sockets they have (a gate in Redis), and "stopped" only after a
    "typing" it heard; in a room where only admins post, nothing from the others."""

    def __init__(self, slug: str, person: str) -> None:
        self.slug, self.person = slug, person
        self.told_at = 0.0  # when the room was last told this person is typing
        self.telling = False  # the room believes they are typing
        # htmx's throttle sends a last "1" when its period ends, which may come just after the
        # "0": with the draft the "0" had. Only a digest of that draft is kept, to tell it
        # from a new key.
        self.stopped_draft: int | None = None

    async def frame(self, flag: str, draft: str, name: str, admin: bool) -> None:
        digest = hash(draft)
        if flag == "0":
            self.stopped_draft = digest
            await self.stopped()
            return
        now = time.monotonic()
        if digest == self.stopped_draft or now - self.told_at < THROTTLE_SECONDS:
            return
        self.told_at, self.stopped_draft = now, None
        told = await store.redis().eval(
            _TELL,
            2,
            moderation.rules_key(self.slug),
            f"{{r:{self.slug}}}:typing:{self.person}",
            "1" if admin else "0",
            int(THROTTLE_SECONDS * 1000),
            typing_channel(self.slug),
            f"{self.person} {name}",
        )
        self.telling = self.telling or bool(told)

    async def stopped(self) -> None:
        if self.telling:
            self.telling = False
            await store.redis().spublish(typing_channel(self.slug), f"-{self.person}")


def line_text(names: tuple[str, ...], variant: Variant) -> str:
    if not names:
        return ""
    with i18n.use(variant):
        if len(names) == 1:
            return i18n.gettext(ONE).format(name=names[0])
        if len(names) == 2:
            return i18n.gettext(TWO).format(first=names[0], second=names[1])
        return i18n.gettext(MANY)


@dataclass
class Viewer:
    """One socket's typing line. A changed line waits to ride along with the socket's next
    frame (in a busy room one comes soon); after RIDE_SECONDS it is sent alone."""

    person: str
    variant: Variant
    push: Callable[[str], None]
    shown: tuple[str, ...] = ()
    pending: str | None = None
    since: float = 0.0

    def take(self) -> str | None:
        """The line waiting, if any (the socket is about to send a frame)."""
        line, self.pending = self.pending, None
        return line


@dataclass
class Room:
    typists: dict[str, tuple[str, float]] = field(default_factory=dict)  # person: name, last
    viewers: dict[str, Viewer] = field(default_factory=dict)  # by socket id


class Board:
    """This worker's rooms' typists, and the sockets that show them (a bus Watcher)."""

    def __init__(self, app: Quart) -> None:
        self.app = app
        self.rooms: dict[str, Room] = {}
        self.lines: dict[tuple[tuple[str, ...], Variant], str] = {}
        # Viewers given a line since the last tick: the tick looks at these, not at every
        # socket (most lines ride along with a frame of the room before it comes).
        self.waiting: dict[int, Viewer] = {}

    def enter(
        self, slug: str, socket_id: str, person: str, variant: Variant, push: Callable[[str], None]
    ) -> Viewer:
        room = self.rooms.get(slug)
        if room is None:
            room = self.rooms[slug] = Room()
            bus_module.bus(self.app).watch(typing_channel(slug), self)
        viewer = room.viewers[socket_id] = Viewer(person, variant, push)
        self._show(room, viewer)
        return viewer

    def leave(self, slug: str, socket_id: str) -> None:
        room = self.rooms.get(slug)
        if room is None:
            return
        viewer = room.viewers.pop(socket_id, None)
        if viewer is not None:
            self.waiting.pop(id(viewer), None)
        if not room.viewers:
            del self.rooms[slug]
            bus_module.bus(self.app).unwatch(typing_channel(slug), self)

    # chat/bus.py Watcher
    def on_item(self, channel: str, item: str) -> None:
        room = self.rooms.get(keys.room_of(channel))
        if room is None:
            return
        if item.startswith("-"):
            if room.typists.pop(item[1:], None) is not None:
                self._show_all(room)
            return
        person, _, name = item.partition(" ")
        is_new = person not in room.typists
        room.typists[person] = (name, time.monotonic())
        if is_new:
            self._show_all(room)

    def on_gap(self) -> None:
        """Stops missed while pub/sub was down: LINGER_SECONDS clears them anyway."""

    def tick(self) -> None:
        """Drop typists who went quiet; send the lines that waited long enough alone."""
        now = time.monotonic()
        for room in self.rooms.values():
            gone = [p for p, (_, last) in room.typists.items() if last < now - LINGER_SECONDS]
            for person in gone:
                del room.typists[person]
            if gone:
                self._show_all(room)
        for key, viewer in list(self.waiting.items()):
            if viewer.pending is None:
                del self.waiting[key]  # it rode along with a frame
            elif now - viewer.since >= RIDE_SECONDS:
                viewer.push(viewer.pending)
                viewer.pending = None
                del self.waiting[key]

    def _show_all(self, room: Room) -> None:
        for viewer in room.viewers.values():
            self._show(room, viewer)

    def _show(self, room: Room, viewer: Viewer) -> None:
        names = tuple(name for person, (name, _) in room.typists.items() if person != viewer.person)
        if len(names) > 2:  # "Several people are typing…" whoever they are
            names = ("", "", "")
        if names == viewer.shown:
            return
        viewer.shown = names
        key = (names, viewer.variant)
        html = self.lines.get(key)
        if html is None:
            if len(self.lines) > 4096:
                self.lines.clear()
            html = self.lines[key] = LINE.format(text=escape(line_text(names, viewer.variant)))
        if viewer.pending is None:
            viewer.since = time.monotonic()
            self.waiting[id(viewer)] = viewer
        viewer.pending = html


def init_app(app: Quart) -> None:
    board = Board(app)
    app.extensions["typing"] = board

    tasks.run_while_serving(app, lambda: _expiry(board))


async def _expiry(board: Board) -> None:
    while True:
        await asyncio.sleep(TICK_SECONDS)
        try:
            board.tick()
        except Exception:
            log.exception("typing expiry failed")


def board(app: Quart) -> Board:
    return app.extensions["typing"]  # type: ignore[no-any-return]
