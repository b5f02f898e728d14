"""Sign-in by emailed one-time code, and sign-out."""

from __future__ import annotations

import ipaddress
import logging
import re
from datetime import UTC, datetime

from quart import Blueprint, Response, current_app, redirect, render_template, request, url_for
from quart.typing import ResponseReturnValue
from quart_auth import current_user, login_user, logout_user

from chat import (
    addresses,
    bans,
    codes,
    i18n,
    mailer,
    membership,
    people,
    sessions,
    signin_limits,
    signin_notice,
    store,
    user_agents,
)
from chat.codes import Requester, Verdict
from chat.problems import Problem, problem
from chat.sessions import ChatUser, current_session

bp = Blueprint("auth", __name__)
log = logging.getLogger("chat.auth")

ATTEMPT_COOKIE = "chat_signin"
ATTEMPT_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def code_policy() -> codes.CodePolicy:
    config = current_app.config
    return codes.CodePolicy(
        ttl_seconds=config["CODE_TTL_SECONDS"],
        max_attempts=config["CODE_MAX_ATTEMPTS"],
        failures_per_network=config["SIGNIN_FAILURES_BEFORE_LOCK"],
        network_lock_seconds=config["SIGNIN_LOCK_SECONDS"],
        failures_from_strangers=config["SIGNIN_FAILURES_PER_EMAIL_BEFORE_LOCK"],
        strangers_lock_seconds=config["SIGNIN_EMAIL_LOCK_SECONDS"],
    )


def send_policy() -> signin_limits.SendPolicy:
    config = current_app.config
    return signin_limits.SendPolicy(
        resend_seconds=config["CODE_RESEND_SECONDS"],
        per_inbox=config["CODE_SENDS_PER_EMAIL_PER_HOUR"],
        per_inbox_network=config["CODE_SENDS_PER_EMAIL_PER_NETWORK_PER_HOUR"],
        per_network=config["CODE_SENDS_PER_IP_PER_HOUR"],
        per_site=config["CODE_SENDS_PER_HOUR"],
    )


def check_policy() -> signin_limits.CheckPolicy:
    config = current_app.config
    return signin_limits.CheckPolicy(
        per_network_per_hour=config["CODE_CHECKS_PER_IP_PER_HOUR"],
        failures_per_minute=config["CODE_CHECKS_PER_MINUTE"],
        new_address_failures_per_hour=config["NEW_ADDRESS_FAILURES_PER_HOUR"],
    )


def refusal(verdict: Verdict) -> Problem:
    """Why a code was not taken, for the person who typed it."""
    kind = {
        Verdict.WRONG: "wrong_code",
        Verdict.EXPIRED: "code_expired",
        Verdict.LOCKED: "code_locked",
    }[verdict]
    return problem(kind)


def attempt_token() -> str:
    """The browser's sign-in cookie, if it holds something we could have made."""
    token = request.cookies.get(ATTEMPT_COOKIE, "")
    return token if ATTEMPT_TOKEN.fullmatch(token) else ""


def requester(email: str, token: str) -> Requester:
    return signin_limits.requester(store.secret(), email, request.remote_addr, token)


async def step(template: str, status: int = 200, **context: object) -> tuple[str, int]:
    """The form fragment for htmx, or the whole sign-in page for a plain form post."""
    if request.headers.get("HX-Request"):
        return await render_template(f"auth/{template}", **context), status
    return await render_template("auth/login.html", form=template, **context), status


@bp.get("/login")
async def login() -> ResponseReturnValue:
    """The sign-in page: email first."""
    if await current_user.is_authenticated:
        return redirect(url_for("rooms.index"))
    left = request.args.get("left") == "1"
    return await render_template("auth/login.html", form="_email_form.html", left=left)


@bp.post("/login")
async def send_code() -> ResponseReturnValue:
    """Mail a code to the address and ask for it."""
    form = await request.form
    raw = form.get("email", "")
    config = current_app.config
    domains: list[str] = config["ALLOWED_EMAIL_DOMAINS"]
    address = addresses.normalise(raw, domains)
    if address is None:
        return await step(
            "_email_form.html", 400, email=raw[:254], problem=problem("invalid_email")
        )
    email = address.email
    if domains and email.rsplit("@", 1)[1] not in domains:
        return await step(
            "_email_form.html",
            400,
            email=email,
            problem=problem("domain_not_allowed", domains=domains),
        )
    if await bans.is_banned(store.redis(), email):
        return await step("_email_form.html", 403, email=email, problem=problem("banned"))
    token = attempt_token() or signin_limits.new_attempt_token()
    redis, who = store.redis(), requester(email, token)
    known = await codes.is_known_network(redis, who)
    wait = await signin_limits.acquire_send(redis, who, known, send_policy())
    if wait:
        return await step(
            "_email_form.html", 429, email=email, problem=problem("too_many_codes", seconds=wait)
        )
    code = codes.new_code()
    message = await mailer.code_email(
        config["MAIL_FROM"],
        address.deliver_to,
        code,
        config["CODE_TTL_SECONDS"],
        config["PUBLIC_URL"],
    )
    try:
        await mailer.send(message, config["SMTP"], config["SMTP_TIMEOUT_SECONDS"])
    except mailer.MailError as error:
        log.warning("sign-in code not sent: %s", error)
        await signin_limits.release_resend(redis, who)
        kind = (
            "address_needs_smtputf8" if isinstance(error, mailer.NeedsSmtpUtf8) else "code_not_sent"
        )
        return await step("_email_form.html", 503, email=email, problem=problem(kind))
    # Stored only once the mail server took the message: no live code without its email.
    await codes.store(redis, store.secret(), email, who, code, code_policy())
    log.info("sign-in code sent")
    html, status = await step("_code_form.html", email=email)
    response = Response(html, status)
    # The code works only in the browser that holds this: nobody else can guess it or use up
    # its tries, wherever they are.
    response.set_cookie(
        ATTEMPT_COOKIE,
        token,
        max_age=config["CODE_TTL_SECONDS"],
        path=url_for("auth.login"),
        secure=config["COOKIE_SECURE"],
        httponly=True,
        samesite="Lax",
    )
    return response


@bp.post("/login/code")
async def check_code() -> ResponseReturnValue:
    """Sign in with the emailed code."""
    form = await request.form
    config = current_app.config
    address = addresses.normalise(form.get("email", ""), config["ALLOWED_EMAIL_DOMAINS"])
    code = form.get("code", "")
    if address is None:
        return await step("_email_form.html", 400, problem=problem("start_again"))
    email = address.email
    redis, who = store.redis(), requester(email, attempt_token())
    if await bans.is_banned(redis, email):
        return await step("_email_form.html", 403, email=email, problem=problem("banned"))
    known = await codes.is_known_network(redis, who)
    new_address = not await people.exists(redis, email)
    wait = await signin_limits.acquire_check(redis, who, known, new_address, check_policy())
    if wait:
        log.info("sign-in check refused: too many from this network or the site")
        return await step(
            "_code_form.html", 429, email=email, problem=problem("too_many_attempts", seconds=wait)
        )
    verdict = await codes.verify(redis, store.secret(), email, who, code, code_policy())
    if verdict is not Verdict.OK:
        log.info("sign-in failed: %s", verdict.value)
        if verdict is Verdict.WRONG:
            await signin_limits.record_failure(redis, known, new_address)
        return await step("_code_form.html", 400, email=email, problem=refusal(verdict))
    person = await people.person_for(redis, email)
    await people.list_person(redis, person)
    await membership.accept_invites(redis, store.secret(), person, email)
    replaced = await current_session()
    if replaced is not None:  # signing in again in a signed-in browser: one session, not two
        await sessions.revoke(redis, replaced.id, replaced.person)
    user_agent = user_agents.clean(request.headers.get("User-Agent"))
    ip = _ip_address(request.remote_addr)
    session = await sessions.create(
        redis,
        email,
        person,
        config["SESSION_IDLE_SECONDS"],
        config["MAX_SESSIONS_PER_PERSON"],
        user_agent=user_agent,
        ip=ip,
    )
    if await bans.is_banned(redis, email):  # banned while signing in: the ban's sweep missed it
        await sessions.revoke(redis, session.id, person)
        return await step("_email_form.html", 403, email=email, problem=problem("banned"))
    login_user(ChatUser(session.id), remember=True)
    log.info("sign-in succeeded")
    if not new_address:  # the very first sign-in of an address is no news to its owner
        current_app.add_background_task(
            signin_notice.send,
            current_app._get_current_object(),  # type: ignore[attr-defined]
            person,
            user_agent,
            ip,
            datetime.now(UTC),
            i18n.current() or i18n.Variant(),
        )
    return _go_to(url_for("rooms.index"))


@bp.post("/logout")
async def logout() -> ResponseReturnValue:
    """Sign out: the session is deleted server-side and its sockets closed."""
    session = await current_session()
    if session is not None:
        await sessions.revoke(store.redis(), session.id, session.person)
    logout_user()
    return _go_to(url_for("auth.login"))


def _ip_address(raw: str | None) -> str:
    """The client's address as an address, or "" (a proxy's header is text anyone could set)."""
    try:
        return str(ipaddress.ip_address(raw or ""))
    except ValueError:
        return ""


def _go_to(location: str) -> ResponseReturnValue:
    if request.headers.get("HX-Request"):
        return Response("", 200, headers={"HX-Redirect": location})
    return redirect(location, 303)
