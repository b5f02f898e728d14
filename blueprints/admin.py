"""The admins' page `/admin` (bans, bots, the admin log) and a room's rules.

Every route here is for the addresses in CHAT_ADMIN_EMAILS only: anyone else signed in gets
403, someone signed out the sign-in page. Every change is recorded in the admin log.
"""

from __future__ import annotations

import re

from quart import Blueprint, abort, current_app, redirect, render_template, request, url_for
from quart.typing import ResponseReturnValue
from quart_auth import login_required

from chat import addresses, admins, bans, bots, membership, moderation, sidebar, store
from chat.problems import ShownError, problem
from chat.sessions import Session, current_session

bp = Blueprint("admin", __name__)

BOT_ID = re.compile(r"^[0-9a-f]{16}$")


async def admin() -> Session:
    """The signed-in admin; 403 for everyone else."""
    session = await current_session()
    if session is None:  # login_required has checked; this narrows the type
        abort(401)
    if not admins.is_admin(session.email):
        raise ShownError(403, "admins_only_page")
    return session


@bp.get("/admin")
@login_required
async def index() -> str:
    """Bans, bots and the admin log."""
    return await _page(await admin())


async def _page(session: Session, **context: object) -> str:
    redis = store.redis()
    return await render_template(
        "admin/index.html",
        session=session,
        sidebar=await sidebar.for_page(redis, session),
        banned=await bans.listed(redis),
        bots=await bots.listed(redis),
        actions=await admins.recent(redis),
        public_url=current_app.config["PUBLIC_URL"],
        **context,
    )


@bp.post("/admin/bans")
@login_required
async def ban() -> ResponseReturnValue:
    """Ban an address: its sessions end now, its sign-ins are refused."""
    session = await admin()
    raw = (await request.form).get("email", "")
    address = addresses.normalise(raw, current_app.config["ALLOWED_EMAIL_DOMAINS"])
    if address is None:
        invalid = problem("invalid_email")
        return await _page(session, ban_problem=invalid, ban_email=raw[:254]), 400
    redis = store.redis()
    refusal = await bans.ban(
        redis, address.email, session.email, current_app.config["ADMIN_EMAILS"]
    )
    if refusal is not None:
        status = 404 if refusal.kind == "ban_no_such_person" else 403
        return await _page(session, ban_problem=refusal, ban_email=address.email), status
    await admins.record(redis, session.email, "ban", address.email)
    return redirect(url_for("admin.index"), 303)


@bp.post("/admin/bans/lift")
@login_required
async def unban() -> ResponseReturnValue:
    """Lift a ban."""
    session = await admin()
    email = (await request.form).get("email", "")[:254]
    redis = store.redis()
    if await bans.unban(redis, email):
        await admins.record(redis, session.email, "unban", email)
    return redirect(url_for("admin.index"), 303)


@bp.post("/admin/bots")
@login_required
async def create_bot() -> ResponseReturnValue:
    """Make a bot for a room; its secret URL is shown on this one answer, never again."""
    session = await admin()
    form = await request.form
    name, room = form.get("name", ""), form.get("room", "")
    redis = store.redis()
    token, refusal = await bots.create(redis, store.secret(), name, room, session.email)
    if token is None:
        status = 404 if refusal and refusal.kind == "bot_no_such_room" else 400
        context = {"bot_problem": refusal, "bot_name": name[:200], "bot_room": room[:200]}
        return await _page(session, **context), status
    created = await bots.by_token(redis, store.secret(), token)
    assert created is not None
    await admins.record(
        redis, session.email, "bot_created", created.room, name=created.name, bot=created.id
    )
    hook_url = current_app.config["PUBLIC_URL"] + url_for("hooks.post", token=token)
    return await _page(session, hook_url=hook_url, hook_bot=created), 201


@bp.post("/admin/bots/<bot_id>/revoke")
@login_required
async def revoke_bot(bot_id: str) -> ResponseReturnValue:
    """Revoke a bot: its URL answers 404 from now on."""
    session = await admin()
    if not BOT_ID.fullmatch(bot_id):
        abort(404)
    redis = store.redis()
    gone = await bots.revoke(redis, bot_id)
    if gone is None:
        abort(404)
    await admins.record(redis, session.email, "bot_revoked", gone.room, name=gone.name, bot=gone.id)
    return redirect(url_for("admin.index"), 303)


@bp.post("/rooms/<slug>/rules")
@login_required
async def rules(slug: str) -> ResponseReturnValue:
    """Save a room's slow mode and whether only admins can post."""
    session = await admin()
    redis = store.redis()
    if await membership.readable(redis, slug, session.person) is None:
        abort(404)
    form = await request.form
    slow = form.get("slow", "0")
    if slow not in {str(seconds) for seconds in moderation.SLOW_MODES}:  # "²".isdigit()
        raise ShownError(400, "bad_rules")
    new = moderation.Rules(int(slow), form.get("admins_only") == "1")
    await moderation.save(redis, slug, new)
    await admins.record(
        redis,
        session.email,
        "rules",
        slug,
        slow=str(new.slow),
        admins_only="1" if new.admins_only else "0",
    )
    return redirect(url_for("rooms.room", slug=slug), 303)
