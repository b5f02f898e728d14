"""Display name, language, time zone, emails and where one is signed in: the settings page;
the language form on every page."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from quart import Blueprint, current_app, redirect, render_template, request, url_for
from quart.typing import ResponseReturnValue
from quart_auth import login_required
from werkzeug.wrappers import Response as WerkzeugResponse

from chat import (
    i18n,
    mention_mail,
    profiles,
    ratelimit,
    sessions,
    sidebar,
    signin_notice,
    store,
)
from chat import signed_in as signed_in_list
from chat.people import person_key
from chat.problems import Problem, problem
from chat.sessions import Session, current_session

bp = Blueprint("settings", __name__)

COOKIE_SECONDS = 365 * 86400
RENAMES_PER_HOUR = 10


@bp.get("/settings")
@login_required
async def show() -> str:
    """The settings page: display name, language, time zone, mention emails."""
    ended = request.args.get("ended", "")
    return await _page(
        await signed_in(),
        saved=request.args.get("saved") == "1",
        ended=int(ended) if ended.isascii() and ended.isdigit() and len(ended) < 4 else None,
    )


@bp.post("/settings")
@login_required
async def save() -> ResponseReturnValue:
    """Save the choices for the person (every session of theirs follows)."""
    session = await signed_in()
    form = await request.form
    # Everything is checked before anything is saved: a refused form changes nothing.
    raw_name = form.get("display_name")
    try:
        name = None if raw_name is None else profiles.clean_display_name(raw_name)
    except profiles.NameRefused as refused:
        return await _page(session, name_refusal=refused.problem, typed_name=raw_name), 400
    time_zone = i18n.known_time_zone(form.get("time_zone"))
    if time_zone is None:
        return await _page(session, refusal=problem("unknown_time_zone")), 400
    renames_key = person_key(session.person, "renames")
    renaming = name is not None and name != session.display_name
    if renaming:  # a rename touches every room of the person: a few an hour
        wait = await ratelimit.peek(store.redis(), renames_key, RENAMES_PER_HOUR, 3600)
        if wait:
            too_many = problem("too_many_renames", per_hour=RENAMES_PER_HOUR, seconds=wait)
            return await _page(session, name_refusal=too_many, typed_name=raw_name), 429
    if name is not None and renaming:  # a post without the field (an older page) keeps it
        await ratelimit.count(store.redis(), renames_key, 3600)
        await profiles.rename(store.redis(), session.person, name)
    # An unknown language means "no choice": the browser's preference decides again.
    locale = i18n.known_locale(form.get("locale")) or ""
    await sessions.save_choices(store.redis(), session.person, locale, time_zone)
    # The form sends "0" (a hidden field) then "1" when ticked; a post without either (an
    # older page) leaves the choice as it was.
    if ticks := form.getlist("mention_mail"):
        await mention_mail.set_enabled(store.redis(), session.person, "1" in ticks)
    if ticks := form.getlist("signin_mail"):
        await signin_notice.set_enabled(store.redis(), session.person, "1" in ticks)
    return _remember_language(redirect(url_for("settings.show", saved="1"), 303), locale)


async def _page(
    session: Session,
    refusal: Problem | None = None,
    saved: bool = False,
    name_refusal: Problem | None = None,
    typed_name: str | None = None,
    ended: int | None = None,
) -> str:
    redis, max_seconds = store.redis(), current_app.config["SESSION_MAX_SECONDS"]
    return await render_template(
        "settings/index.html",
        session=session,
        display_name=session.display_name if typed_name is None else typed_name,
        name_problem=name_refusal,
        max_name_chars=profiles.MAX_NAME_CHARS,
        chosen_zone=i18n.known_time_zone(session.time_zone) or i18n.DEFAULT_TIME_ZONE,
        mention_mail=await mention_mail.enabled(redis, session.person),
        signin_mail=await signin_notice.enabled(redis, session.person),
        signed_in=await signed_in_list.listed(redis, session.person, session.id, max_seconds),
        ended=ended,
        # Zone names in the viewer's language: slow to build once per language, so in a thread.
        time_zones=await asyncio.to_thread(i18n.time_zone_labels, i18n.page_locale()),
        problem=refusal,
        saved=saved,
        sidebar=await sidebar.for_page(store.redis(), session),
    )


@bp.post("/language")
async def language() -> ResponseReturnValue:
    """The language form on every page: for the person if signed in, and in a cookie."""
    form = await request.form
    locale = i18n.known_locale(form.get("locale")) or ""
    session = await current_session()
    if session is not None:
        time_zone = i18n.known_time_zone(session.time_zone) or ""
        await sessions.save_choices(store.redis(), session.person, locale, time_zone)
    return _remember_language(redirect(_local_path(form.get("next", "")), 303), locale)


def _remember_language(response: WerkzeugResponse, locale: str) -> WerkzeugResponse:
    if locale:
        response.set_cookie(
            i18n.COOKIE,
            locale,
            max_age=COOKIE_SECONDS,
            samesite="Lax",
            httponly=True,
            secure=current_app.config["COOKIE_SECURE"],
        )
    else:
        response.delete_cookie(i18n.COOKIE)
    return response


def _local_path(target: str) -> str:
    """Back to the page the form was on; never to another site (//evil, /\\evil, http:...)."""
    target = target.removesuffix("?")
    if not target.startswith("/") or target.startswith(("//", "/\\")) or len(target) > 2000:
        return "/"
    if any(ord(char) < 32 for char in target):
        return "/"
    return quote(target, safe="/?&=%:@+,;~!$'()*-._")  # a Location header is ASCII


async def signed_in() -> Session:
    session = await current_session()
    assert session is not None  # login_required has checked
    return session
