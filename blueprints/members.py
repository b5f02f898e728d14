"""Who is in a private room or a direct conversation: inviting by email, leaving."""

from __future__ import annotations

from quart import Blueprint, current_app, redirect, render_template, request, url_for
from quart.typing import ResponseReturnValue
from quart_auth import login_required

from blueprints.rooms import readable_or_404, signed_in
from chat import addresses, membership, ratelimit, sidebar_hub, store
from chat.clients import inbox_key
from chat.problems import Problem, problem
from chat.sessions import Session

bp = Blueprint("members", __name__)


@bp.post("/rooms/<slug>/invite")
@login_required
async def invite(slug: str) -> ResponseReturnValue:
    """Let an address into a private room; the answer never says whether it has an account."""
    session = await signed_in()
    room = await readable_or_404(session, slug)
    if room.kind != membership.PRIVATE:
        return await _answer(session, room, problem("invite_private_only"), 400)
    form = await request.form
    raw = form.get("email", "")
    config = current_app.config
    address = addresses.normalise(raw, config["ALLOWED_EMAIL_DOMAINS"])
    if address is None:
        return await _answer(session, room, problem("invalid_email"), 400, raw[:254])
    domains: list[str] = config["ALLOWED_EMAIL_DOMAINS"]
    if domains and address.email.rsplit("@", 1)[1] not in domains:
        refusal = problem("domain_not_allowed", domains=domains)
        return await _answer(session, room, refusal, 400, address.email)
    redis = store.redis()
    if await redis.scard(membership.members_key(slug)) >= membership.MAX_MEMBERS:
        refusal = problem("room_members_full", limit=membership.MAX_MEMBERS)
        return await _answer(session, room, refusal, 400, address.email)
    per_hour = config["INVITES_PER_PERSON_PER_HOUR"]
    key = f"{{a:{inbox_key(store.secret(), session.email)}}}:invites"
    wait = await ratelimit.fixed_window(redis, key, per_hour, 3600)
    if wait:
        refusal = problem("too_many_invites", per_hour=per_hour, seconds=wait)
        return await _answer(session, room, refusal, 429, address.email)
    invited = await membership.invite_address(redis, store.secret(), slug, address.email)
    if invited is not None:
        await sidebar_hub.publish_event(invited, "sidebar")  # their open tabs list it now
    return await _answer(session, room, None, 200, invited_email=address.email)


async def _answer(
    session: Session,
    room: membership.Room,
    refusal: Problem | None,
    status: int,
    email: str = "",
    invited_email: str = "",
) -> ResponseReturnValue:
    """The invite form again (a fragment for htmx, else the room's own invite page)."""
    template = (
        "rooms/_invite_form.html" if request.headers.get("HX-Request") else "rooms/invite.html"
    )
    return await render_template(
        template,
        slug=room.slug,
        name=room.title_for(session.person),
        session=session,
        problem=refusal,
        email=email,
        invited_email=invited_email,
    ), status


@bp.post("/rooms/<slug>/leave")
@login_required
async def leave(slug: str) -> ResponseReturnValue:
    """Leave a private room or a direct conversation: its sockets close, lists forget it."""
    session = await signed_in()
    room = await readable_or_404(session, slug)
    if room.kind == membership.OPEN:
        return redirect(url_for("rooms.room", slug=slug), 303)  # open rooms have no members
    await membership.leave(store.redis(), slug, session.person)
    await sidebar_hub.publish_event(session.person, "leave", slug)
    return redirect(url_for("rooms.index"), 303)
