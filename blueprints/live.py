"""The room websocket: backfill, then live fragments out; messages in."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from typing import Any

from quart import Blueprint, Quart, abort, current_app, websocket
from quart.blueprints import BlueprintSetupState
from quart.wrappers import Websocket

from chat import (
    admins,
    frames,
    history,
    i18n,
    live_room,
    membership,
    moderation,
    online_lists,
    presence,
    security,
    sessions,
    sidebar_hub,
    store,
    typists,
    unread,
    wire,
)
from chat import bus as bus_module
from chat.bus import Signal, Subscription
from chat.fragments import render_fragment
from chat.frames import CLOSE_POLICY, FrameBudget
from chat.localize import Piece
from chat.membership import Room
from chat.messages import CLIENT_ID, new_id, post_message, room_channel
from chat.problems import Problem, problem
from chat.sessions import Session, current_session, session_channel
from chat.sidebar_hub import person_channel
from chat.text import clean_body

bp = Blueprint("live", __name__)
log = logging.getLogger("chat.live")

# At most this many queued fragments are joined into one outgoing frame.
BATCH_LIMIT = 64
# The epoch query parameter is a short hex token (chat/history.py).
EPOCH = re.compile(r"^[0-9a-f]{1,32}$")

# Stands for the client id in the compose form kept per socket (not a valid client id).
FORM_ID_SLOT = "\x00client-id\x00"

# hx-ws reconnects after these (the others are in chat/frames.py).
CLOSE_SERVER_ERROR = 1011
CLOSE_RESTART = 1012
CLOSE_TRY_AGAIN = 1013


class OpenSockets:
    """This worker's open room sockets, so that a shutdown can close them all with 1012."""

    def __init__(self) -> None:
        self.sockets: set[RoomSocket] = set()
        self.closing = False


def keep_open_sockets(state: BlueprintSetupState) -> None:
    state.app.extensions["live"] = OpenSockets()


bp.record_once(keep_open_sockets)


async def close_all(app: Quart) -> None:
    """Refuse new sockets and close the open ones with 1012: hx-ws reconnects elsewhere."""
    open_sockets: OpenSockets = app.extensions["live"]
    open_sockets.closing = True
    sockets = list(open_sockets.sockets)
    if sockets:
        log.info("server restarting: closing %d sockets with 1012", len(sockets))
    await asyncio.gather(*(s.close(CLOSE_RESTART, "server restarting") for s in sockets))


@bp.websocket("/rooms/<slug>/ws")
async def room_socket(slug: str) -> None:
    """Live room for one signed-in browser tab."""
    if current_app.extensions["live"].closing:
        abort(503)  # this worker is stopping; hx-ws retries, and finds another one
    origin = websocket.headers.get("Origin")
    if origin and not security.origin_allowed(origin, websocket.scheme, websocket.host):
        abort(403)
    session: Session | None = await current_session()
    if session is None:
        abort(401)
    room = await membership.readable(store.redis(), slug, session.person)
    if room is None:
        abort(404)  # not 403: a private room's existence is not revealed
    # Anything but a well-formed 64-bit stream id from the past is ignored: the client gets the
    # latest page (an id in the future would hold back every message up to it).
    after = websocket.args.get("after")
    seen = history.parse_id(after)
    after = after if seen is not None and seen[0] < time.time() * 1000 + 86_400_000 else None
    epoch = websocket.args.get("epoch")
    await RoomSocket(room, session, after, epoch if epoch and EPOCH.match(epoch) else None).run()


class RoomSocket:
    def __init__(self, room: Room, session: Session, after: str | None, epoch: str | None) -> None:
        self.room = room
        self.slug = room.slug
        self.session = session
        self.session_id = session.id
        self.user = presence.user_of(session.person, session.email)
        self.last_id = after
        self.seen = history.id_key(after) if after else None  # last_id, parsed
        self.epoch = epoch
        self.socket_id = secrets.token_hex(8)
        # Chosen at the handshake (chat/i18n.py); kept for renders from outside the handler.
        self.variant = i18n.current() or i18n.Variant()
        # The connection itself, not the context-bound proxy: a shutdown closes it from
        # outside the handler's context.
        self.websocket: Websocket = websocket._get_current_object()  # type: ignore[attr-defined]
        config = current_app.config
        # Frames may come twice as fast as messages: room for the few that are not messages.
        self.frames = FrameBudget(
            2 * float(config["WS_MESSAGES_PER_SECOND"]), 2 * float(config["WS_BURST"])
        )
        self.max_rejected = int(config["WS_BURST"])
        self.max_chars = int(config["MAX_MESSAGE_CHARS"])
        self.handler: asyncio.Task[object] | None = None
        self.rejected = 0  # frames refused in a row (not understood, too long, too fast)
        self.dropped = 0  # frames dropped in a row for want of a frame token
        self.close_code: int | None = None
        self.sidebar: sidebar_hub.Member | None = None
        self.typing = typists.Signal(room.slug, session.person)
        self.typing_line: typists.Viewer | None = None
        self.line: wire.Line | None = None  # the connection's transport (chat/wire.py)
        self.form: str | None = None  # the compose form, client id left out (fresh_form)

    async def run(self) -> None:
        cap = int(current_app.config["WS_MAX_SOCKETS_PER_SESSION"])
        claim = await sessions.claim_socket(
            store.redis(), self.session.id, self.socket_id, presence.TTL_SECONDS
        )
        if claim == "gone":
            abort(401)
        if claim == "busy":  # reconnecting in a loop: refused before the upgrade
            abort(429)
        if claim == "full":
            await websocket.accept()
            await self.send_problem(problem("too_many_tabs", cap=cap))
            await websocket.close(CLOSE_POLICY, "too many sockets for this session")
            return
        await self.serve()  # leave() gives the socket back; if never reached, it expires

    async def serve(self) -> None:
        bus = bus_module.bus()
        channels = (
            room_channel(self.slug),
            session_channel(self.session.id),
            person_channel(self.session.person),
        )
        open_sockets: OpenSockets = current_app.extensions["live"]
        async with bus.subscribe(*channels, variant=self.variant) as subscription:
            await websocket.accept()
            self.handler = asyncio.current_task()
            open_sockets.sockets.add(self)  # from here on, a restart closes it with 1012
            try:
                if open_sockets.closing:  # the restart began while this socket was set up
                    await self.close(CLOSE_RESTART, "server restarting")
                    return
                await self.live(subscription)
            finally:
                open_sockets.sockets.discard(self)
                # The handler is being cancelled (the peer left); leaving the room (and giving
                # the session's socket back) is bookkeeping that must finish anyway, so it
                # runs in its own task.
                current_app.add_background_task(self.leave)

    async def live(self, subscription: Subscription) -> None:
        log.info("websocket open: room %s", self.slug)
        # First: a missed-mention email must not go out for what this socket is about to show.
        await unread.note_seen(store.redis(), [self.session.person])
        await self.send_backfill()
        await self.join()
        self.sidebar = sidebar_hub.Member(
            sidebar_hub.hub(current_app), self.socket_id, self.variant, subscription.push
        )
        await self.sidebar.start(self.session.person, self.user, self.slug)
        self.typing_line = typists.board(current_app).enter(
            self.slug, self.socket_id, self.session.person, self.variant, subscription.push
        )
        forwarding = asyncio.create_task(self.forward(subscription))
        subscription.on_overflow = forwarding.cancel
        self.line = wire.line(self.websocket)
        if self.line is not None:
            subscription.fast = self.write_now
        try:
            await self.receive()
        finally:
            forwarding.cancel()

    async def send_backfill(self) -> None:
        current = await history.epoch(store.redis(), self.slug)
        history_lost = self.epoch is not None and self.epoch != current
        self.epoch = current
        if history_lost:
            log.warning("room %s history was reset; clients reload it", self.slug)
            self.last_id = None  # replace the whole list instead of appending
        frame, newest = await live_room.backfill_frame(self.slug, self.last_id)
        if history_lost:
            frame = (frame or await live_room.empty_history_frame()) + await render_fragment(
                "rooms/_notice.html", notice="history_lost"
            )
        if frame is not None:
            await websocket.send(frame)
        self.last_id = newest
        self.seen = history.id_key(newest) if newest else None

    async def join(self) -> None:
        local: presence.LocalSockets = current_app.extensions["presence"]
        local.add(self.slug, self.socket_id, self)
        if await presence.join(store.redis(), self.slug, self.user, self.socket_id):
            await live_room.announce(self.slug, self.user, "joined")
        else:
            await websocket.send(await live_room.online_frame(self.slug))

    async def leave(self) -> None:
        log.info(
            "websocket closed: room %s, code %s", self.slug, self.close_code or "from the peer"
        )
        local: presence.LocalSockets = current_app.extensions["presence"]
        local.remove(self.slug, self.socket_id)
        if self.slug not in local.by_room:  # the worker's last socket in the room
            online_lists.of(current_app).forget(self.slug)
        typists.board(current_app).leave(self.slug, self.socket_id)
        if "redis" in current_app.extensions:
            with contextlib.suppress(*store.REDIS_DOWN):
                # First: a tab closed and opened again at once must find its allowance back.
                await sessions.release_socket(store.redis(), self.session.id, self.socket_id)
            with contextlib.suppress(*store.REDIS_DOWN):
                await self.typing.stopped()
        if self.sidebar is not None:
            await self.sidebar.stop()
        if "redis" not in current_app.extensions:
            return  # shutting down: the presence entry expires by itself
        try:
            if self.close_code == CLOSE_RESTART:
                # Not a departure: the browser reconnects to another worker at once. The entry
                # expires (30 s) and the sweep says "left" only if it never came back.
                return
            await presence.leave(store.redis(), self.slug, self.user, self.socket_id)
            local.sweep_later(self.slug)
        except store.REDIS_DOWN as error:
            log.warning("presence not updated on leave (room %s): %s", self.slug, error)

    async def forward(self, subscription: Subscription) -> None:
        try:
            await self.forward_items(subscription)
        except asyncio.CancelledError:
            if not subscription.overflowed:
                raise
            await self.close_slow_socket()
        except store.REDIS_DOWN as error:  # a catch-up read failed: the client retries it
            log.warning("socket catch-up failed (room %s): %s", self.slug, error)
            await self.close(CLOSE_TRY_AGAIN, "try again")
        except Exception:  # never a socket that silently stops receiving
            log.exception("forwarding to a socket failed (room %s)", self.slug)
            await self.close(CLOSE_SERVER_ERROR, "server error")

    def write_now(self, piece: Piece) -> bool:
        """Called by the worker's pub/sub reader while this socket's queue is empty: write a
        room's message (or notice) straight to the connection. False: queue it instead."""
        key, position, _, framed = piece
        line = self.line
        if not framed or key in sidebar_hub.EVENTS or key == "revoke" or line is None:
            return False
        if not line.ready():
            return False  # closing, or not keeping up: the queue and the slow path
        if not self.advance(key, position):
            return True  # already sent in the backfill
        extra = self.sidebar.take_pending() if self.sidebar is not None else []
        if self.typing_line is not None and (typing_line := self.typing_line.take()):
            extra.append(typing_line)
        line.write(framed + wire.text_frame("".join(extra)) if extra else framed)
        return True

    def advance(self, key: str, position: tuple[int, int] | None) -> bool:
        """Note a stream entry as the newest sent; False if the backfill already sent it."""
        if position is not None:
            if self.seen is not None and position <= self.seen:
                return False
            self.last_id, self.seen = key, position
        return True

    async def forward_items(self, subscription: Subscription) -> None:
        async for first in subscription:
            subscription.busy = True  # until sent: what arrives meanwhile queues behind
            try:
                await self.forward_batch(subscription, first)
            finally:
                subscription.busy = False
            if self.close_code is not None:
                return

    async def forward_batch(self, subscription: Subscription, first: Piece | Signal) -> None:
        # Under load several messages wait in the queue: one frame carries them all, so
        # the framing and the send() syscall are paid once per batch, not per message.
        batch: list[str] = []
        for item in (first, *subscription.take_ready(BATCH_LIMIT)):
            if item is Signal.OVERFLOW:
                await self.close_slow_socket()
                return
            if item is Signal.GAP:
                await self.send_batch(batch)
                # A sign-out published while pub/sub was down never reached us.
                max_seconds = int(current_app.config["SESSION_MAX_SECONDS"])
                if not (await sessions.alive(store.redis(), [self.session.id], max_seconds))[0]:
                    await self.session_ended()
                    return
                # So was a "leave" from another tab.
                if not await self.still_allowed():
                    await self.room_left()
                    return
                await self.send_backfill()
                if self.sidebar is not None:
                    await self.sidebar.reload()  # rooms joined or left meanwhile
                continue
            key, position, frame, _ = item
            if key in sidebar_hub.EVENTS:
                assert self.sidebar is not None
                if await self.sidebar.event(key, frame):
                    await self.send_batch(batch)
                    await self.room_left()
                    return
                continue
            if key == "revoke":
                await self.send_batch(batch)
                await self.session_ended()
                return
            if not self.advance(key, position):
                continue  # already sent in the backfill
            if frame:
                batch.append(frame)
        if self.sidebar is not None:
            batch.extend(self.sidebar.take_pending())  # sidebar lines ride along
        if batch and self.typing_line is not None and (line := self.typing_line.take()):
            batch.append(line)  # so does the typing line
        await self.send_batch(batch)

    async def send_batch(self, batch: list[str]) -> None:
        if batch:
            await websocket.send("".join(batch))
            batch.clear()

    async def close_slow_socket(self) -> None:
        log.warning("closing a socket that fell behind (room %s)", self.slug)
        await self.close(CLOSE_TRY_AGAIN, "too far behind; reconnect")

    async def session_ended(self) -> None:
        """Signed out, expired or ended elsewhere: say so, then close (hx-ws stays closed)."""
        await send_notice(self.websocket, self.variant, "signed_out")
        await self.close(CLOSE_POLICY, "signed out")

    async def still_allowed(self) -> bool:
        """Is the person still a member (always, for an open room)?"""
        if not self.room.has_members:
            return True
        found = await membership.readable(store.redis(), self.slug, self.session.person)
        return found is not None

    async def room_left(self) -> None:
        """The person left this room (in any tab): say so, then close like a sign-out."""
        await send_notice(self.websocket, self.variant, "room_left")
        await self.close(CLOSE_POLICY, "left the room")

    async def close(self, code: int, reason: str) -> None:
        """Close with `code` and end the handler (a peer that stopped reading may never answer)."""
        if self.close_code is None:  # the first close is the one the peer gets
            self.close_code = code
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.websocket.close(code, reason), timeout=2)
        if self.handler is not None:
            self.handler.cancel()

    async def receive(self) -> None:
        while True:
            raise_if_cancelled()
            raw = await websocket.receive()
            if not self.frames.take():
                # Dropped unread: a flood must not cost a parse or a reply. The first drop of
                # a run is still told, so nothing a person sent vanishes without a word.
                self.dropped += 1
                if self.dropped == 1:
                    await self.send_problem(problem("sending_too_fast"))
                elif self.dropped > self.frames.burst:
                    await self.close(CLOSE_POLICY, "sending too fast")
                    return
                continue
            self.dropped = 0
            data = frames.decode(raw)
            if isinstance(data, tuple):
                await self.close(*data)
                return
            outcome = await self.handle(data)
            if outcome:
                self.rejected = 0
            elif outcome is False:
                self.rejected += 1
                if self.rejected > self.max_rejected:
                    await self.close(CLOSE_POLICY, "too many rejected frames")
                    return

    async def handle(self, data: dict[str, Any]) -> bool | None:
        """Act on one frame by its kind: True if done, False if refused (the sender is told
        why), None if there was nothing to do (a blank message, a typing frame too soon)."""
        if "typing" in data:
            return await self.handle_typing(data)
        return await self.handle_message(data)

    async def handle_typing(self, data: dict[str, Any]) -> bool | None:
        """ "I am typing" ("1") or "I stopped" ("0"), told to the others in the room."""
        flag, draft = data.get("typing"), data.get("body")
        if flag not in ("0", "1") or not isinstance(draft, str):
            await self.send_problem(problem("not_understood"))
            return False
        try:
            admin = admins.is_admin(self.session.email)
            await self.typing.frame(flag, draft, self.session.display_name, admin)
        except store.REDIS_DOWN as error:  # nobody sees it: nothing a person needs to hear
            log.warning("typing not told (room %s): %s", self.slug, error)
        return True

    async def handle_message(self, data: dict[str, Any]) -> bool | None:
        """Post one message (the compose form's frame)."""
        body = data.get("body")
        client_id = data.get("client_id")
        if not isinstance(body, str) or not isinstance(client_id, str):
            await self.send_problem(problem("not_understood"))
            return False
        if not CLIENT_ID.fullmatch(client_id):
            client_id = new_id()
        body = clean_body(body)
        if not body:
            return None
        if len(body) > self.max_chars:
            await self.send_problem(
                problem("message_too_long", limit=self.max_chars, length=len(body))
            )
            return False
        try:
            # The rename of a person (in any tab) reaches this socket's next message.
            wait, self.session = await sessions.check_send(store.redis(), self.session)
            if wait < 0:  # expired: every socket of the session closes, on every worker
                await sessions.revoke(store.redis(), self.session.id, self.session.person)
                await self.session_ended()
                return False
            if wait > 0:
                await self.send_problem(problem("sending_too_fast"))
                return False
            if not await self.still_allowed():  # left in another tab, the event not yet here
                await self.room_left()
                return False
            refusal = await moderation.refusal(
                store.redis(), self.slug, self.session.person, admins.is_admin(self.session.email)
            )
            if refusal is not None:
                await self.send_problem(refusal)
                return None  # a room rule, not a misbehaving client
            await post_message(self.room, self.session, body, client_id)
            await self.typing.stopped()  # the others stop seeing "… is typing" at once
        except store.REDIS_DOWN as error:
            log.warning("message not stored (room %s): %s", self.slug, error)
            await self.send_problem(problem("not_delivered"))
            return None  # the sender did nothing wrong
        await websocket.send(await self.fresh_form())
        return True

    async def fresh_form(self) -> str:
        """An empty compose form with a new client id (rendered once per socket)."""
        if self.form is None:
            self.form = await render_fragment(
                "rooms/_compose.html", slug=self.slug, oob=True, client_id=FORM_ID_SLOT
            )
        return self.form.replace(FORM_ID_SLOT, new_id(), 1)

    async def send_problem(self, refusal: Problem) -> None:
        await websocket.send(await render_fragment("rooms/_compose_error.html", problem=refusal))


async def send_notice(ws: Websocket, variant: i18n.Variant, notice: str) -> None:
    """A last word before a close, in the viewer's language; the heartbeat may call this from
    outside the socket's handler, and a peer that is gone is no error."""
    with contextlib.suppress(Exception):
        with i18n.use(variant):
            html = await render_fragment("rooms/_notice.html", notice=notice)
        await ws.send(html)


def raise_if_cancelled() -> None:
    """Honour a cancellation that a library swallowed on the way (seen with redis-py).

    Quart cancels the handler when the peer disconnects; if that CancelledError is lost inside
    a Redis call, the handler would otherwise wait in receive() forever and leak the socket.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
