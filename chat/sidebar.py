"""The sidebar on every page: the person's rooms and direct conversations, with unread counts.

`View` is one viewer's sidebar: which rooms, their last-read marks and mentions. Pages build
one from Redis; a socket keeps one up to date in memory (chat/sidebar_hub.py), so a message
costs no Redis work per member: its number alone moves the counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from markupsafe import Markup
from redis.asyncio import Redis

from chat import membership, presence, rooms, unread
from chat.fragments import render_fragment
from chat.membership import OPEN, Room
from chat.sessions import Session

Badges = tuple[str, int, int]
NO_BADGES: Badges = ("", 0, 0)


@dataclass(frozen=True)
class Entry:
    """One line of the sidebar as a viewer sees it (also the key of its rendering cache)."""

    slug: str
    kind: str
    title: str
    unread: str  # "" for none, else "3" or "99+"
    count: int  # unread (100 for "99+"), for the plural of the accessible text
    mentions: int
    current: bool


@dataclass
class View:
    person: str
    viewing: str | None
    rooms: dict[str, Room]  # in sidebar order
    marks: dict[str, int]
    mention_seqs: dict[str, list[int]] = field(default_factory=dict)
    # Rooms this person has open in another tab (socket ids): they count nothing meanwhile.
    elsewhere: dict[str, set[str]] = field(default_factory=dict)

    def badges(self, slug: str, latest: int) -> Badges:
        """What the line's badges say: unread as shown ("", "3", "99+"), that count, mentions."""
        if slug == self.viewing or self.elsewhere.get(slug):
            return NO_BADGES
        mark = self.marks.get(slug, 0)
        count = latest - mark if latest > mark else 0
        seqs = self.mention_seqs.get(slug)
        mentions = sum(1 for seq in seqs if seq > mark) if seqs else 0
        # Past 99 the count is "99+", and its plural is 100's in every language.
        return (unread.shown(count) if count else "", min(count, 100), mentions)

    def entry(self, slug: str, latest: int) -> Entry:
        room = self.rooms[slug]
        shown, count, mentions = self.badges(slug, latest)
        return Entry(
            slug,
            room.kind,
            room.title_for(self.person),
            shown,
            count,
            mentions,
            slug == self.viewing,
        )

    def sections(self, latest: dict[str, int]) -> tuple[list[Entry], list[Entry]]:
        entries = [self.entry(slug, latest.get(slug, 0)) for slug in self.rooms]
        return (
            [e for e in entries if e.kind != membership.DIRECT],
            [e for e in entries if e.kind == membership.DIRECT],
        )


async def rooms_of(redis: Redis, person: str, viewing: str | None = None) -> dict[str, Room]:
    """Open rooms the person opened ("general" first, then by name), their private rooms by
    name, then their direct conversations, newest first."""
    opened = [Room(slug, OPEN, name) for slug, name in await rooms.of_person(redis, person)]
    joined = await membership.joined(redis, person)
    private = sorted(
        (room for room in joined if room.kind == membership.PRIVATE),
        key=lambda room: room.name.casefold(),
    )
    direct = [room for room in joined if room.kind == membership.DIRECT]
    listed = {room.slug: room for room in (*opened, *private, *direct)}
    if viewing is not None and viewing not in listed and not membership.MEMBER_ROOM.match(viewing):
        listed[viewing] = Room(viewing, OPEN, viewing)  # an open room trimmed from the list
    return listed


async def load(
    redis: Redis, person: str, viewing: str | None, listed: dict[str, Room] | None = None
) -> tuple[View, dict[str, int]]:
    """The person's sidebar from Redis, and the newest message number of each of its rooms."""
    if listed is None:
        listed = await rooms_of(redis, person, viewing)
    marks = await unread.marks(redis, person)
    seqs: dict[str, list[int]] = {}
    for slug, seq in await unread.mentions(redis, person):
        if slug in listed:
            seqs.setdefault(slug, []).append(seq)
    view = View(person, viewing, listed, marks, seqs)
    return view, await unread.latest(redis, listed)


async def render(view: View, latest: dict[str, int], oob: bool = False) -> str:
    rooms_part, direct_part = view.sections(latest)
    return await render_fragment(
        "rooms/_sidebar.html", rooms=rooms_part, direct=direct_part, oob=oob
    )


async def for_page(redis: Redis, session: Session, viewing: str | None = None) -> Markup:
    """The sidebar of a page, rendered (the page marks `viewing` read before asking); rooms
    open in the person's other tabs count nothing, as in those tabs' live sidebars."""
    view, latest = await load(redis, session.person, viewing)
    user = presence.user_of(session.person, session.email)
    view.elsewhere = await presence.open_elsewhere(redis, user, list(view.rooms), "")
    return Markup(await render(view, latest))  # noqa: S704 - a rendered, autoescaped template
