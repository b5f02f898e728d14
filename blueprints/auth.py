"""Sign-in by emailed one-time code, and sign-out."""

from __future__ import annotations

import logging

from email_validator import EmailNotValidError, validate_email
from quart import Blueprint, Response, current_app, redirect, render_template, request, url_for
from quart.typing import ResponseReturnValue
from quart_auth import current_user, login_user, logout_user

from chat import codes, mailer, people, sessions, signin_limits, store
from chat.codes import Requester, Verdict
from chat.sessions import ChatUser, current_session
from chat.text import clean_line

bp = Blueprint("auth", __name__)
log = logging.getLogger("chat.auth")


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
    )


def check_policy() -> signin_limits.CheckPolicy:
    config = current_app.config
    return signin_limits.CheckPolicy(
        per_network_per_hour=config["CODE_CHECKS_PER_IP_PER_HOUR"],
        per_minute=config["CODE_CHECKS_PER_MINUTE"],
    )


def requester(email: str) -> Requester:
    return signin_limits.requester(store.secret(), email, request.remote_addr)


async def step(template: str, status: int = 200, **context: object) -> tuple[str, int]:
    """The form fragment for htmx, or the whole sign-in page for a plain form post."""
    if request.headers.get("HX-Request"):
        return await render_template(f"auth/{template}", **context), status
    return await render_template("auth/login.html", form=template, **context), status


def normalise_email(raw: str) -> str | None:
    if "\r" in raw or "\n" in raw or len(raw) > 254 or clean_line(raw) != raw.strip():
        return None  # invisible or control characters have no place in an address
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


@bp.get("/login")
async def login() -> ResponseReturnValue:
    """The sign-in page: email first."""
    if await current_user.is_authenticated:
        return redirect(url_for("rooms.index"))
    return await render_template("auth/login.html", form="_email_form.html")


@bp.post("/login")
async def send_code() -> tuple[str, int]:
    """Mail a code to the address and ask for it."""
    form = await request.form
    raw = form.get("email", "")
    email = normalise_email(raw)
    if email is None:
        return await step(
            "_email_form.html",
            400,
            email=raw[:254],
            error="Enter a valid email address, like name@example.org.",
        )
    domains = current_app.config["ALLOWED_EMAIL_DOMAINS"]
    if domains and email.rsplit("@", 1)[1] not in domains:
        return await step(
            "_email_form.html",
            400,
            email=email,
            error="This chat only accepts addresses from: " + ", ".join(domains) + ".",
        )
    redis, who = store.redis(), requester(email)
    known = await codes.is_known_network(redis, who)
    wait = await signin_limits.acquire_send(redis, who, known, send_policy())
    if wait:
        return await step(
            "_email_form.html",
            429,
            email=email,
            error=f"Too many codes asked for. Try again in {_duration(wait)}.",
        )
    code = codes.new_code()
    config = current_app.config
    message = mailer.code_email(
        config["MAIL_FROM"], email, code, config["CODE_TTL_SECONDS"], config["PUBLIC_URL"]
    )
    try:
        await mailer.send(message, config["SMTP"], config["SMTP_TIMEOUT_SECONDS"])
    except mailer.MailError as error:
        log.warning("sign-in code not sent: %s", error)
        await signin_limits.release_resend(redis, who)
        return await step(
            "_email_form.html",
            503,
            email=email,
            error="We couldn't send the code, try again in a minute.",
        )
    # Stored only once the mail server took the message: no live code without its email.
    await codes.store(redis, store.secret(), email, who, code, code_policy())
    log.info("sign-in code sent")
    return await step("_code_form.html", email=email)


@bp.post("/login/code")
async def check_code() -> ResponseReturnValue:
    """Sign in with the emailed code."""
    form = await request.form
    email = normalise_email(form.get("email", ""))
    code = form.get("code", "")
    if email is None:
        return await step("_email_form.html", 400, error="Start again with your email address.")
    redis, who = store.redis(), requester(email)
    known = await codes.is_known_network(redis, who)
    wait = await signin_limits.acquire_check(redis, who, known, check_policy())
    if wait:
        log.info("sign-in check refused: too many from this network or the site")
        return await step(
            "_code_form.html",
            429,
            email=email,
            error=f"Too many sign-in attempts. Try again in {_duration(wait)}.",
        )
    verdict = await codes.verify(redis, store.secret(), email, who, code, code_policy())
    if verdict is not Verdict.OK:
        log.info("sign-in failed: %s", verdict.value)
        error = {
            Verdict.WRONG: "That code is not right. Check the email and try again.",
            Verdict.EXPIRED: "That code has expired or was used up, or it was asked for "
            "from another network. Ask for a new one.",
            Verdict.LOCKED: "Too many wrong codes for this address. Try again later.",
        }[verdict]
        return await step("_code_form.html", 400, email=email, error=error)
    config = current_app.config
    session = await sessions.create(
        redis,
        email,
        await people.person_for(redis, email),
        config["SESSION_IDLE_SECONDS"],
        config["MAX_SESSIONS_PER_PERSON"],
    )
    login_user(ChatUser(session.id), remember=True)
    log.info("sign-in succeeded")
    return _go_to(url_for("rooms.index"))


@bp.post("/logout")
async def logout() -> ResponseReturnValue:
    """Sign out: the session is deleted server-side and its sockets closed."""
    session = await current_session()
    if session is not None:
        await sessions.revoke(store.redis(), session.id, session.person)
    logout_user()
    return _go_to(url_for("auth.login"))


def _go_to(location: str) -> ResponseReturnValue:
    if request.headers.get("HX-Request"):
        return Response("", 200, headers={"HX-Redirect": location})
    return redirect(location, 303)


def _duration(seconds: int) -> str:
    if seconds < 90:
        return "1 second" if seconds == 1 else f"{seconds} seconds"
    return f"{(seconds + 59) // 60} minutes"
