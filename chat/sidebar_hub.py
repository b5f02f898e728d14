"""Live sidebars: every socket's unread counts kept in memory, pushed at most once a second.

The worker watches (chat/bus.py) the channel of every room in its sockets' sidebars: one copy
of each message per worker, whatever the number of members. A message's head carries the
room's new number and whom it mentions; the room is noted as changed. Once a second the
changed lines of each socket's sidebar are worked out (each distinct line rendered once per
viewer variant) and wait to ride along with the socket's next frame: the room it has open
sends one soon if it is busy; a quiet room's socket gets them alone, within 1-2 s when
something new appeared (a first unread, a mention), within 5-6 s when a count only went up.
So a sidebar costs few extra sends. Marks of open rooms are written every 10 s, once per person
and room, never per message.

Events on a person's channel (`person:<id>`), one word and its arguments:
  read <room> <number>            a page or tab read the room up to there
  open <room> <number> <socket>   a tab opened the room (others count nothing meanwhile)
  shut <room> <number> <socket>   that tab closed, having read up to there
  sidebar                         rooms were added (invited, a new conversation): reload
  leave <room>                    the person left the room: its sockets close, lists reload
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from markupsafe import escape
from quart import Quart

from chat import bus as bus_module
from chat import i18n, keys, presence, sidebar, store, tasks, unread
from chat.fragments import render_fragment
from chat.i18n import Variant
from chat.messages import room_channel
from chat.sidebar import NO_BADGES, Badges, Entry, View

log = logging.getLogger("chat.sidebar")

EVENTS = frozenset({"read", "open", "shut", "sidebar", "leave"})
PUSH_SECONDS = 1.0
# A socket whose room sends nothing gets its waiting badges alone: at the next push when
# something new appeared (a first unread, a mention), else after FLUSH_PUSHES (a count that
# only went up rides along with the room's next frame if it comes within 5 s).
FLUSH_PUSHES = 5
MARK_EVERY = 10  # pushes: open rooms' marks and "seen" are written every 10 s
CACHE_LIMIT = 4096
BADGES_LINE = '<span id="badges-{slug}" class="badges" hx-swap-oob="true">{unread}{mentions}</span>'


GroupKey = tuple[str, str | None, Variant]  # person, the room open, variant


def person_channel(person: str) -> str:
    return f"{{p:{person}}}:live"


async def publish_event(person: str, event: str, *args: object) -> None:
    await store.redis().spublish(person_channel(person), f"{event}\n{' '.join(map(str, args))}")


class Member:
    """One socket's sidebar."""

    def __init__(
        self, hub: Hub, socket_id: str, variant: Variant, wake: Callable[[str], None]
    ) -> None:
        self.hub = hub
        self.socket_id = socket_id
        self.variant = variant
        self.wake = wake  # queues an empty item: the socket's sender comes by and takes `pending`
        # Sidebar HTML waiting to ride along with the socket's next frame (the open room sends
        # one soon anyway): the whole sidebar, or the newest version of each changed line. The
        # hub wakes the sender if none went out within FLUSH_PUSHES.
        self.whole: str | None = None
        self.lines: dict[str, str] = {}
        self.waiting_since = 0
        self.urgent = False  # a first unread or a new mention is waiting
        self.view = View("", None, {}, {})
        self.mark_written = 0
        self.user = ""
        self.left = False  # the person left the room this socket has open

    async def start(self, person: str, user: str, viewing: str | None) -> None:
        """Load the sidebar, mark the open room read, and send the sidebar as it is now."""
        redis = store.redis()
        self.user = user
        self.view = View(person, viewing, {}, {})
        await self._load()
        view = self.view
        # Rooms open in the person's other tabs count nothing here either (their "open"
        # events came before this socket listened).
        view.elsewhere = await presence.open_elsewhere(
            redis, user, list(view.rooms), self.socket_id
        )
        if viewing is not None:
            seq = self.hub.latest.get(viewing, 0)
            await unread.mark_read(redis, person, viewing, seq)
            view.marks[viewing] = max(view.marks.get(viewing, 0), seq)
            self.mark_written = seq
            await publish_event(person, "open", viewing, seq, self.socket_id)
        await unread.note_seen(redis, [person])
        await self.push_all()

    async def _load(self) -> None:
        """Watch the person's rooms first, then read their numbers: a message published in
        between is then both counted in Redis and seen by the watch, never missed."""
        redis, view = store.redis(), self.view
        listed = await sidebar.rooms_of(redis, view.person, view.viewing)
        self.hub.remove(self)
        self.view = View(view.person, view.viewing, listed, {}, {}, view.elsewhere)
        self.hub.add(self)
        await self.hub.watching(list(listed))
        loaded, latest = await sidebar.load(redis, view.person, view.viewing, listed)
        loaded.elsewhere = view.elsewhere
        self.view = loaded  # the same rooms: the hub's indexes still hold
        self.hub.note_latest(latest)

    @property
    def group(self) -> GroupKey:
        return (self.view.person, self.view.viewing, self.variant)

    async def push_all(self) -> None:
        latest = self.hub.latest
        self.hub.sent_whole(self)
        with i18n.use(self.variant):
            whole = await sidebar.render(self.view, latest, oob=True)
        self.whole, self.lines = whole, {}  # it replaces any line still waiting
        self.urgent = False
        self.wake("")

    def take_pending(self) -> list[str]:
        if self.whole is None and not self.lines:
            return []  # the usual case, on every frame the socket sends
        taken = [self.whole] if self.whole else []
        taken.extend(self.lines.values())
        self.whole, self.lines = None, {}
        return taken

    async def stop(self) -> None:
        self.hub.remove(self)
        viewing = self.view.viewing
        if viewing is None or self.left or "redis" not in self.hub.app.extensions:
            return  # a room left keeps no mark
        seq = self.hub.latest.get(viewing, 0)
        try:
            redis = store.redis(self.hub.app)
            await unread.mark_read(redis, self.view.person, viewing, seq)
            await unread.note_seen(redis, [self.view.person])
            await publish_event(self.view.person, "shut", viewing, seq, self.socket_id)
        except store.REDIS_DOWN as error:
            log.warning("read mark not saved (room %s): %s", viewing, error)

    async def event(self, kind: str, args: str) -> bool:
        """Act on an event of the person's channel; True if this socket's room was left."""
        view = self.view
        words = args.split()
        if kind in ("read", "open", "shut") and len(words) >= 2 and words[1].isdigit():
            slug, seq = words[0], int(words[1])
            view.marks[slug] = mark = max(view.marks.get(slug, 0), seq)
            if view.mention_seqs.get(slug):  # read mentions need not be kept
                view.mention_seqs[slug] = [n for n in view.mention_seqs[slug] if n > mark]
            if kind != "read" and len(words) == 3 and words[2] != self.socket_id:
                others = view.elsewhere.setdefault(slug, set())
                (others.add if kind == "open" else others.discard)(words[2])
            self.hub.touch(self, slug)
            return False
        if kind == "leave" and words and words[0] == view.viewing:
            self.left = True
            return True
        if kind in ("sidebar", "leave"):
            await self.reload()
        return False

    async def reload(self) -> None:
        await self._load()
        # An "open" or "shut" may have been missed (pub/sub down): ask presence again.
        self.view.elsewhere = await presence.open_elsewhere(
            store.redis(), self.user, list(self.view.rooms), self.socket_id
        )
        await self.push_all()


class Hub:
    """This worker's live sidebars."""

    def __init__(self, app: Quart) -> None:
        self.app = app
        self.latest: dict[str, int] = {}
        self.by_room: dict[str, set[Member]] = {}
        self.by_person: dict[str, set[Member]] = {}
        self.groups: dict[GroupKey, set[Member]] = {}
        # room -> the groups of tabs that show it with a count (listed, not the room open):
        # a message's push visits these groups, not every socket of the room.
        self.counting: dict[str, dict[GroupKey, set[Member]]] = {}
        self.changed_rooms: set[str] = set()
        self.changed: dict[GroupKey, set[str]] = {}
        self.cache: dict[tuple[Variant, str, str, int], str] = {}
        # person -> group of tabs -> room -> the badges that group was last sent
        self.shown: dict[str, dict[GroupKey, dict[str, Badges]]] = {}
        self.waiting: set[Member] = set()  # with lines pending
        self.pushes = 0
        self.stale = False  # pub/sub was lost: numbers may have been missed

    def note_latest(self, latest: dict[str, int]) -> None:
        for slug, seq in latest.items():
            if seq > self.latest.get(slug, 0):
                self.latest[slug] = seq

    def add(self, member: Member) -> None:
        bus = bus_module.bus(self.app)
        group = member.group
        for slug in member.view.rooms:
            self.by_room.setdefault(slug, set()).add(member)
            bus.watch(room_channel(slug), self)
            if slug != member.view.viewing:
                self.counting.setdefault(slug, {}).setdefault(group, set()).add(member)
        self.by_person.setdefault(member.view.person, set()).add(member)
        self.groups.setdefault(group, set()).add(member)

    async def watching(self, slugs: list[str]) -> None:
        """Once this returns, Redis delivers these rooms' messages to this worker."""
        await bus_module.bus(self.app).confirm([room_channel(slug) for slug in slugs])

    def remove(self, member: Member) -> None:
        bus = bus_module.bus(self.app)
        group = member.group
        for slug in member.view.rooms:
            members = self.by_room.get(slug)
            if members is not None:
                members.discard(member)
                if not members:
                    del self.by_room[slug]
                    bus.unwatch(room_channel(slug), self)
            counting = self.counting.get(slug)
            if counting is not None:
                _drop(counting, group, member)
                if not counting:
                    del self.counting[slug]
        _drop(self.groups, group, member)
        people = self.by_person.get(member.view.person)
        if people is not None:
            people.discard(member)
            if not people:
                del self.by_person[member.view.person]
                self.shown.pop(member.view.person, None)
        self.waiting.discard(member)

    def touch(self, member: Member, slug: str) -> None:
        self.changed.setdefault(member.group, set()).add(slug)

    # chat/bus.py Watcher: called for every item of a watched room, before any socket's copy.
    def on_item(self, channel: str, item: str) -> None:
        head = item[: item.find("\n")]
        parts = head.split(" ")
        if len(parts) < 3 or not parts[1].isdigit():
            return  # a presence notice, not a message
        slug, seq = keys.room_of(channel), int(parts[1])
        if seq > self.latest.get(slug, 0):
            self.latest[slug] = seq
        for person in filter(None, parts[2].split(",")):
            for member in self.by_person.get(person, ()):
                if slug in member.view.rooms:
                    member.view.mention_seqs.setdefault(slug, []).append(seq)
        self.changed_rooms.add(slug)

    def on_gap(self) -> None:
        self.stale = True

    async def push_changes(self) -> None:
        self.pushes += 1
        for member in list(self.waiting):
            if not member.lines:
                self.waiting.discard(member)  # they went out with a frame of the room
            elif member.urgent or self.pushes - member.waiting_since >= FLUSH_PUSHES:
                member.wake("")  # the room is quiet: they go out alone
                member.urgent = False
                self.waiting.discard(member)
        if self.stale:
            self.stale = False
            self.note_latest(await unread.latest(store.redis(self.app), list(self.by_room)))
            self.changed_rooms.update(self.by_room)
        for slug in self.changed_rooms:
            for key in self.counting.get(slug, ()):
                self.changed.setdefault(key, set()).add(slug)
        self.changed_rooms.clear()
        changed, self.changed = self.changed, {}
        # Tabs of one person with the same room open and the same variant see the same
        # sidebar: their lines are worked out once.
        for key, slugs in changed.items():
            members = self.groups.get(key)
            if not members:
                continue  # its tabs closed meanwhile
            lines, urgent = await self._lines(key, next(iter(members)), slugs)
            if lines:
                for member in members:
                    if member not in self.waiting:
                        member.waiting_since = self.pushes
                        self.waiting.add(member)
                    member.lines.update(lines)
                    member.urgent = member.urgent or urgent

    async def _lines(
        self, key: GroupKey, first: Member, slugs: set[str]
    ) -> tuple[dict[str, str], bool]:
        """The badges that changed since this group of tabs was last sent them, and whether
        something new appeared (not just a count going up)."""
        shown = self.shown.setdefault(key[0], {}).setdefault(key, {})
        view, lines, urgent = first.view, {}, False
        for slug in slugs:
            if slug not in view.rooms:
                continue
            badges = view.badges(slug, self.latest.get(slug, 0))
            before = shown.get(slug, NO_BADGES)
            if before == badges:
                continue  # e.g. still "99+"
            shown[slug] = badges
            urgent = urgent or bool(badges[1] and not before[1]) or badges[2] > before[2]
            unread_part, mentions_part = await self._parts(first.variant, badges)
            html = BADGES_LINE.format(slug=escape(slug), unread=unread_part, mentions=mentions_part)
            lines[slug] = html
        return lines, urgent

    async def _parts(self, variant: Variant, badges: Badges) -> tuple[str, str]:
        """A line's two badges, each rendered once per value and variant (a few hundred in
        all: counts stop at 99+), so a second of new counts costs dictionary lookups."""
        shown, count, mentions = badges
        parts = []
        for template, key in (
            ("rooms/_badge_unread.html", (variant, "u", shown, count)),
            ("rooms/_badge_mentions.html", (variant, "m", "", mentions)),
        ):
            html = self.cache.get(key)
            if html is None:
                line = Entry("", "", "", shown, count, mentions, current=False)
                with i18n.use(variant):
                    html = await render_fragment(template, e=line)
                if len(self.cache) >= CACHE_LIMIT:
                    self.cache.clear()
                self.cache[key] = html
            parts.append(html)
        return parts[0], parts[1]

    def sent_whole(self, member: Member) -> None:
        """A whole sidebar went to this tab: its group's badges are those now."""
        latest, view = self.latest, member.view
        self.shown.setdefault(view.person, {})[member.group] = {
            slug: view.badges(slug, latest.get(slug, 0)) for slug in view.rooms
        }

    async def write_marks(self) -> None:
        """Open rooms' marks and who has a socket open, a few seconds late at most."""
        marks: dict[tuple[str, str], int] = {}  # one per person and room, however many tabs
        for members in self.by_person.values():
            for member in members:
                viewing = member.view.viewing
                seq = self.latest.get(viewing, 0) if viewing else 0
                if viewing and seq > member.mark_written:
                    member.mark_written = seq
                    marks[(member.view.person, viewing)] = seq
        redis = store.redis(self.app)
        await unread.mark_many(redis, [(p, slug, seq) for (p, slug), seq in marks.items()])
        await unread.note_seen(redis, list(self.by_person))


def _drop(groups: dict[GroupKey, set[Member]], group: GroupKey, member: Member) -> None:
    tabs = groups.get(group)
    if tabs is not None:
        tabs.discard(member)
        if not tabs:
            del groups[group]


def init_app(app: Quart) -> None:
    hub = Hub(app)
    app.extensions["sidebars"] = hub

    tasks.run_while_serving(app, lambda: _pushes(app, hub))


async def _pushes(app: Quart, hub: Hub) -> None:
    ticks = 0
    while True:
        await asyncio.sleep(PUSH_SECONDS)
        ticks += 1
        try:
            async with app.app_context():
                await hub.push_changes()
                if ticks % MARK_EVERY == 0:
                    await hub.write_marks()
        except store.REDIS_DOWN as error:
            hub.stale = True
            log.warning("sidebar update failed: %s", error)
        except Exception:
            log.exception("sidebar update failed")


def hub(app: Quart) -> Hub:
    return app.extensions["sidebars"]  # type: ignore[no-any-return]
