"""The room list page's own socket: its sidebar kept live, nothing else comes or goes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from quart import Blueprint, abort, current_app, websocket
from quart.wrappers import Websocket

from blueprints.live import BATCH_LIMIT, CLOSE_TRY_AGAIN, OpenSockets, send_notice
from chat import bus as bus_module
from chat import i18n, presence, security, sessions, sidebar_hub, store
from chat.bus import Signal, Subscription
from chat.frames import CLOSE_POLICY
from chat.sessions import Session, current_session, session_channel

bp = Blueprint("lobby", __name__)
log = logging.getLogger("chat.lobby")


@bp.websocket("/ws")
async def socket() -> None:
    """Live sidebar for the room list page."""
    if current_app.extensions["live"].closing:
        abort(503)
    origin = websocket.headers.get("Origin")
    if origin and not security.origin_allowed(origin, websocket.scheme, websocket.host):
        abort(403)
    session = await current_session()
    if session is None:
        abort(401)
    lobby = LobbySocket(session)
    claim = await sessions.claim_socket(
        store.redis(), session.id, lobby.socket_id, presence.TTL_SECONDS
    )
    if claim == "gone":
        abort(401)
    if claim != "ok":
        abort(429)  # too many tabs or handshakes: the room list works without its socket
    await lobby.serve()


class LobbySocket:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.session_id = session.id
        self.user = presence.user_of(session.person, session.email)
        self.socket_id = secrets.token_hex(8)
        self.variant = i18n.current() or i18n.Variant()
        self.websocket: Websocket = websocket._get_current_object()  # type: ignore[attr-defined]
        self.handler: asyncio.Task[object] | None = None

    async def serve(self) -> None:
        channels = (
            session_channel(self.session.id),
            sidebar_hub.person_channel(self.session.person),
        )
        open_sockets: OpenSockets = current_app.extensions["live"]
        local: presence.LocalSockets = current_app.extensions["presence"]
        hub = sidebar_hub.hub(current_app)
        async with bus_module.bus().subscribe(*channels, variant=self.variant) as subscription:
            await websocket.accept()
            self.handler = asyncio.current_task()
            open_sockets.sockets.add(self)  # type: ignore[arg-type]
            local.lobby[self.socket_id] = self  # its session is re-checked with the others
            member = sidebar_hub.Member(hub, self.socket_id, self.variant, subscription.push)
            forwarding: asyncio.Task[None] | None = None
            try:
                await member.start(self.session.person, self.user, None)
                forwarding = asyncio.create_task(self.forward(subscription, member))
                subscription.on_overflow = forwarding.cancel
                await self.receive()
            finally:
                if forwarding is not None:
                    forwarding.cancel()
                open_sockets.sockets.discard(self)
                local.lobby.pop(self.socket_id, None)
                hub.remove(member)
                current_app.add_background_task(
                    sessions.release_socket, store.redis(), self.session.id, self.socket_id
                )

    async def forward(self, subscription: Subscription, member: sidebar_hub.Member) -> None:
        try:
            async for first in subscription:
                batch: list[str] = []
                for item in (first, *subscription.take_ready(BATCH_LIMIT)):
                    if item is Signal.OVERFLOW:
                        await self.close(CLOSE_TRY_AGAIN, "too far behind; reconnect")
                        return
                    if item is Signal.GAP:
                        await member.reload()  # what changed meanwhile
                        continue
                    key, _, frame, _ = item
                    if key == "revoke":
                        await self.session_ended()
                        return
                    if key in sidebar_hub.EVENTS:
                        await member.event(key, frame)
                    elif frame:
                        batch.append(frame)
                batch.extend(member.take_pending())
                if batch:
                    await websocket.send("".join(batch))
        except asyncio.CancelledError:
            raise
        except store.REDIS_DOWN as error:
            log.warning("lobby socket update failed: %s", error)
            await self.close(CLOSE_TRY_AGAIN, "try again")
        except Exception:
            log.exception("lobby socket failed")
            await self.close(1011, "server error")

    async def receive(self) -> None:
        """Nothing is expected from the browser; a client that talks anyway is closed."""
        for _ in range(20):
            await websocket.receive()
        await self.close(CLOSE_POLICY, "this socket takes no frames")

    async def session_ended(self) -> None:
        await send_notice(self.websocket, self.variant, "signed_out")
        await self.close(CLOSE_POLICY, "signed out")

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.websocket.close(code, reason), timeout=2)
        if self.handler is not None:
            self.handler.cancel()
