"""The person's control of their account on /settings: ending sessions, and leaving for good
after a fresh code from their email."""

from __future__ import annotations

import logging

from quart import Blueprint, current_app, redirect, render_template, request, url_for
from quart.typing import ResponseReturnValue
from quart_auth import login_required, logout_user

from blueprints.auth import check_policy, code_policy, refusal, send_policy
from blueprints.settings import signed_in
from chat import addresses, codes, leaving, mailer, signin_limits, store
from chat import signed_in as signed_in_list
from chat.codes import Requester, Verdict
from chat.problems import Problem, ShownError, problem
from chat.sessions import Session

bp = Blueprint("account", __name__)
log = logging.getLogger("chat.auth")


@bp.post("/settings/sessions/end")
@login_required
async def end_session() -> ResponseReturnValue:
    """Sign out one of the person's other sessions (its sockets close at once)."""
    session = await signed_in()
    wanted = (await request.form).get("session", "")
    ended = await signed_in_list.end(
        store.redis(), session.person, wanted, session.id, current_app.config["SESSION_MAX_SECONDS"]
    )
    if not ended:
        raise ShownError(404, "session_not_found")
    return redirect(url_for("settings.show", ended=1) + "#signed-in", 303)


@bp.post("/settings/sessions/end-others")
@login_required
async def end_other_sessions() -> ResponseReturnValue:
    """Sign out every session of the person but this one."""
    session = await signed_in()
    count = await signed_in_list.end_others(
        store.redis(), session.person, session.id, current_app.config["SESSION_MAX_SECONDS"]
    )
    return redirect(url_for("settings.show", ended=count) + "#signed-in", 303)


def _requester(session: Session) -> Requester:
    # The code is bound to this session: it cannot sign anyone in, and a sign-in code cannot
    # delete an account. Sending and guessing share the sign-in limits of the address.
    token = f"delete-account:{session.id}"
    return signin_limits.requester(store.secret(), session.email, request.remote_addr, token)


async def _confirm_page(
    session: Session, status: int, refusal: Problem | None = None, sent: bool = True
) -> tuple[str, int]:
    """The confirm step; `sent` False when this request meant to send a code and did not."""
    page = await render_template(
        "settings/delete.html", session=session, problem=refusal, sent=sent
    )
    return page, status


@bp.post("/settings/delete")
@login_required
async def ask_for_code() -> ResponseReturnValue:
    """First step of leaving: mail a fresh code and ask for it."""
    session = await signed_in()
    config = current_app.config
    redis, who = store.redis(), _requester(session)
    known = await codes.is_known_network(redis, who)
    wait = await signin_limits.acquire_send(redis, who, known, send_policy())
    if wait:
        return await _confirm_page(
            session, 429, problem("too_many_codes", seconds=wait), sent=False
        )
    code = codes.new_code()
    address = addresses.normalise(session.email, [session.domain])
    message = await mailer.code_email(
        config["MAIL_FROM"],
        address.deliver_to if address else session.email,
        code,
        config["CODE_TTL_SECONDS"],
        config["PUBLIC_URL"],
        kind="delete_code",
    )
    try:
        await mailer.send(message, config["SMTP"], config["SMTP_TIMEOUT_SECONDS"])
    except mailer.MailError as error:
        log.warning("account deletion code not sent: %s", error)
        await signin_limits.release_resend(redis, who)
        return await _confirm_page(session, 503, problem("code_not_sent"), sent=False)
    await codes.store(redis, store.secret(), session.email, who, code, code_policy())
    return await _confirm_page(session, 200)


@bp.post("/settings/delete/confirm")
@login_required
async def delete_account() -> ResponseReturnValue:
    """Leave: with the fresh code, the account is deleted and its messages erased."""
    session = await signed_in()
    code = (await request.form).get("code", "")
    redis, who = store.redis(), _requester(session)
    known = await codes.is_known_network(redis, who)
    wait = await signin_limits.acquire_check(redis, who, known, False, check_policy())
    if wait:
        return await _confirm_page(session, 429, problem("too_many_attempts", seconds=wait))
    verdict = await codes.verify(redis, store.secret(), session.email, who, code, code_policy())
    if verdict is not Verdict.OK:
        log.info("account deletion refused: %s", verdict.value)
        if verdict is Verdict.WRONG:
            await signin_limits.record_failure(redis, known, False)
        return await _confirm_page(session, 400, refusal(verdict))
    await leaving.delete_account(redis, session.person, session.email)
    logout_user()
    return redirect(url_for("auth.login", left=1), 303)
