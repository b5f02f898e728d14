"""Sign-in by emailed code, sign-out and session revocation, against real Redis and SMTP."""

from __future__ import annotations

import asyncio
import re

from quart.typing import TestClientProtocol as Client
from redis import Redis

from chat.embedded_redis import free_port
from tests.conftest import sign_in, text_of
from tests.support import Inbox


async def test_login_page_has_email_form(client: Client) -> None:
    response = await client.get("/login")
    html = await response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<label for="email">Email</label>' in html
    assert ">Send code</button>" in html


async def test_signed_out_home_redirects_to_login(client: Client) -> None:
    response = await client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"


async def test_full_sign_in_lands_on_rooms(client: Client, inbox: Inbox) -> None:
    response = await client.post(
        "/login", form={"email": "Ada@Example.org"}, headers={"HX-Request": "true"}
    )
    html = await response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<label for="code">Code</label>' in html and ">Sign in</button>" in html
    assert "<html" not in html  # a fragment for htmx
    mail = inbox.to("ada@example.org")[-1]
    code = await inbox.wait_for_code("ada@example.org")
    assert mail.get_body(preferencelist=("plain",)).get_content().count(code) == 1
    assert mail.get_body(preferencelist=("html",)) is not None
    assert "10 minutes" in mail.get_body(preferencelist=("plain",)).get_content()

    response = await client.post(
        "/login/code",
        form={"email": "ada@example.org", "code": code},
        headers={"HX-Request": "true"},
    )
    assert response.headers["HX-Redirect"] == "/"
    home = await client.get("/")
    page = await home.get_data(as_text=True)
    assert home.status_code == 200
    assert "ada" in text_of(page) and ">Sign out</button>" in page


async def test_plain_form_post_without_javascript(client: Client, inbox: Inbox) -> None:
    response = await client.post("/login", form={"email": "nojs@example.org"})
    page = await response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<html" in page and '<label for="code">Code</label>' in page
    code = await inbox.wait_for_code("nojs@example.org")
    response = await client.post("/login/code", form={"email": "nojs@example.org", "code": code})
    assert response.status_code == 303 and response.headers["Location"] == "/"
    assert (await client.get("/")).status_code == 200


async def test_wrong_code_keeps_form_with_message(client: Client, inbox: Inbox) -> None:
    await client.post("/login", form={"email": "bob@example.org"})
    code = await inbox.wait_for_code("bob@example.org")
    wrong = "000000" if code != "000000" else "111111"
    response = await client.post("/login/code", form={"email": "bob@example.org", "code": wrong})
    html = await response.get_data(as_text=True)
    assert response.status_code == 400
    assert "That code is not right" in html and '<label for="code">Code</label>' in html
    assert (await client.get("/")).status_code == 302  # still signed out


async def test_code_is_single_use(client: Client, inbox: Inbox, app) -> None:  # type: ignore[no-untyped-def]
    await client.post("/login", form={"email": "once@example.org"})
    code = await inbox.wait_for_code("once@example.org")
    first = await client.post("/login/code", form={"email": "once@example.org", "code": code})
    assert first.status_code == 303
    other = app.test_client()
    again = await other.post("/login/code", form={"email": "once@example.org", "code": code})
    assert again.status_code == 400
    assert "expired or was used up" in await again.get_data(as_text=True)


async def test_sixth_wrong_try_kills_the_code(client: Client, inbox: Inbox) -> None:
    await client.post("/login", form={"email": "eve@example.org"})
    code = await inbox.wait_for_code("eve@example.org")
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        response = await client.post(
            "/login/code", form={"email": "eve@example.org", "code": wrong}
        )
        assert "not right" in await response.get_data(as_text=True)
    response = await client.post("/login/code", form={"email": "eve@example.org", "code": code})
    assert response.status_code == 400
    assert "expired or was used up" in await response.get_data(as_text=True)


async def test_expired_code_is_refused(make_app, inbox: Inbox) -> None:  # type: ignore[no-untyped-def]
    app = await make_app(CODE_TTL_SECONDS=1)
    client = app.test_client()
    await client.post("/login", form={"email": "late@example.org"})
    code = await inbox.wait_for_code("late@example.org")
    await asyncio.sleep(1.6)
    response = await client.post("/login/code", form={"email": "late@example.org", "code": code})
    assert response.status_code == 400
    assert "expired" in await response.get_data(as_text=True)


async def test_new_code_voids_previous(client: Client, inbox: Inbox) -> None:
    await client.post("/login", form={"email": "twice@example.org"})
    first = await inbox.wait_for_code("twice@example.org")
    await asyncio.sleep(1.1)  # CODE_RESEND_SECONDS=1 in tests
    await client.post("/login", form={"email": "twice@example.org"})
    second = await inbox.wait_for_code("twice@example.org", after=1)
    if first != second:
        old = await client.post("/login/code", form={"email": "twice@example.org", "code": first})
        assert old.status_code == 400
    new = await client.post("/login/code", form={"email": "twice@example.org", "code": second})
    assert new.status_code == 303


async def test_code_only_stored_as_hmac(client: Client, inbox: Inbox, redis_sync: Redis) -> None:
    await client.post("/login", form={"email": "scan@example.org"})
    code = await inbox.wait_for_code("scan@example.org")
    for key in redis_sync.keys("*"):
        dump = repr(redis_sync.dump(key))
        assert code not in key and code not in dump
        assert "scan@example.org" not in key


async def test_sign_out_revokes_session_for_replayed_cookie(client: Client, inbox: Inbox) -> None:
    await sign_in(client, inbox, "carol@example.org")
    cookies = [(c.name, c.value) for c in client.cookie_jar]  # type: ignore[union-attr]
    response = await client.post("/logout")
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert (await client.get("/")).status_code == 302
    for name, value in cookies:  # an attacker who kept the cookie
        client.set_cookie("localhost", name, value)
    replay = await client.get("/")
    assert replay.status_code == 302 and replay.headers["Location"] == "/login"


async def test_get_logout_does_nothing(client: Client, inbox: Inbox) -> None:
    await sign_in(client, inbox, "dave@example.org")
    assert (await client.get("/logout")).status_code == 405
    assert (await client.get("/")).status_code == 200


async def test_invalid_email_is_refused_and_nothing_sent(client: Client, inbox: Inbox) -> None:
    for bad in ["not-an-email", "a@b.c\r\nBcc: x@y.org", ""]:
        response = await client.post("/login", form={"email": bad})
        assert response.status_code == 400
        assert "Enter a valid email address" in await response.get_data(as_text=True)
    assert inbox.messages == []


async def test_smtp_down_shows_clear_error_and_allows_retry(make_app, inbox: Inbox) -> None:  # type: ignore[no-untyped-def]
    app = await make_app(SMTP_URL=f"smtp://127.0.0.1:{free_port()}", SMTP_TIMEOUT_SECONDS=2)
    client = app.test_client()
    response = await client.post(
        "/login", form={"email": "down@example.org"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 503
    assert "send the code, try again in a minute" in await response.get_data(as_text=True)
    again = await client.post("/login", form={"email": "down@example.org"})
    assert again.status_code == 503  # not throttled: the failed send did not count as a resend


async def test_cross_site_post_is_refused(client: Client, inbox: Inbox) -> None:
    response = await client.post(
        "/login", form={"email": "csrf@example.org"}, headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403
    response = await client.post(
        "/login", form={"email": "csrf@example.org"}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert response.status_code == 403
    assert inbox.messages == []


async def test_two_concurrent_verifies_of_one_code_exactly_one_wins(app, inbox: Inbox) -> None:  # type: ignore[no-untyped-def]
    first, second = app.test_client(), app.test_client()
    await first.post("/login", form={"email": "race@example.org"})
    code = await inbox.wait_for_code("race@example.org")
    form = {"email": "race@example.org", "code": code}
    results = await asyncio.gather(*(c.post("/login/code", form=form) for c in (first, second)))
    assert sorted(r.status_code for r in results) == [303, 400]


async def test_code_is_bound_to_its_email(client: Client, inbox: Inbox) -> None:
    await client.post("/login", form={"email": "owner@example.org"})
    code = await inbox.wait_for_code("owner@example.org")
    response = await client.post("/login/code", form={"email": "thief@example.org", "code": code})
    assert response.status_code == 400
    assert (await client.get("/")).status_code == 302


async def test_resend_is_throttled_with_retry_time_and_nothing_sent(make_app, inbox: Inbox) -> None:  # type: ignore[no-untyped-def]
    app = await make_app(CODE_RESEND_SECONDS=60)
    client = app.test_client()
    assert (await client.post("/login", form={"email": "again@example.org"})).status_code == 200
    response = await client.post("/login", form={"email": "again@example.org"})
    assert response.status_code == 429
    assert re.search(r"Try again in (59 seconds|1 minute)", await response.get_data(as_text=True))
    assert len(inbox.to("again@example.org")) == 1


async def test_allowed_email_domains(make_app, inbox: Inbox) -> None:  # type: ignore[no-untyped-def]
    app = await make_app(ALLOWED_EMAIL_DOMAINS="example.org")
    client = app.test_client()
    response = await client.post("/login", form={"email": "x@elsewhere.net"})
    assert (
        response.status_code == 400
        and "only accepts addresses from: example.org" in await response.get_data(as_text=True)
    )
    assert inbox.messages == []


async def test_idle_and_absolute_session_expiry(make_app, inbox: Inbox) -> None:  # type: ignore[no-untyped-def]
    # Margins of a second or more, so a loaded CI machine cannot flip the outcome.
    idle = await make_app(SESSION_IDLE_SECONDS=2)
    client = idle.test_client()
    await sign_in(client, inbox, "idle@example.org")
    assert (await client.get("/")).status_code == 200
    await asyncio.sleep(3.0)
    assert (await client.get("/")).status_code == 302
    absolute = await make_app(SESSION_MAX_SECONDS=3, SESSION_IDLE_SECONDS=3600)
    client = absolute.test_client()
    await sign_in(client, inbox, "old@example.org")
    await asyncio.sleep(1.0)
    assert (await client.get("/")).status_code == 200  # in use, but...
    await asyncio.sleep(3.0)
    assert (await client.get("/")).status_code == 302  # ...too old


async def test_session_cookie_flags_when_secure(make_app, inbox: Inbox) -> None:  # type: ignore[no-untyped-def]
    app = await make_app(COOKIE_SECURE=True)
    client = app.test_client()
    await client.post("/login", form={"email": "secure@example.org"}, scheme="https")
    code = await inbox.wait_for_code("secure@example.org")
    response = await client.post(
        "/login/code", form={"email": "secure@example.org", "code": code}, scheme="https"
    )
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-chat_session=")
    for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert flag in cookie
    assert "Domain" not in cookie


async def test_session_id_is_random_and_rotated(
    client: Client, inbox: Inbox, redis_sync: Redis
) -> None:
    await sign_in(client, inbox, "rotate@example.org")
    first = set(redis_sync.keys("session:*"))
    await client.post("/logout")
    await asyncio.sleep(1.1)  # CODE_RESEND_SECONDS=1 in tests
    await sign_in(client, inbox, "rotate@example.org")
    second = set(redis_sync.keys("session:*"))
    assert len(first) == 1 and len(second) == 1 and first != second
    session_id = next(iter(second)).split(":", 1)[1]
    assert len(session_id) >= 32 and "rotate" not in session_id


async def test_signing_in_again_in_a_signed_in_browser_replaces_its_session(
    client: Client, inbox: Inbox, redis_sync: Redis
) -> None:
    await sign_in(client, inbox, "twice@example.org")
    first = set(redis_sync.keys("session:*"))
    await asyncio.sleep(1.1)  # CODE_RESEND_SECONDS=1 in tests
    await sign_in(client, inbox, "twice@example.org")  # a sign-in form left open in a tab
    second = set(redis_sync.keys("session:*"))
    assert len(second) == 1 and first != second


async def test_security_headers_and_body_limit(client: Client) -> None:
    response = await client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    for part in (
        "script-src 'self'",
        "style-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ):
        assert part in csp
    assert "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cache-Control"] == "no-store"
    too_big = await client.post("/login", form={"email": "a" * 70000 + "@example.org"})
    assert too_big.status_code == 413


async def test_same_answer_for_known_and_unknown_addresses(client: Client, inbox: Inbox) -> None:
    """No account enumeration: there are no accounts to look up, and the answers match."""
    await sign_in(client, inbox, "known@example.org")
    await client.post("/logout")
    await asyncio.sleep(1.1)  # CODE_RESEND_SECONDS=1 in tests
    answers = []
    for address in ("known@example.org", "never-seen@example.org"):
        response = await client.post(
            "/login", form={"email": address}, headers={"HX-Request": "true"}
        )
        answers.append(
            (
                response.status_code,
                (await response.get_data(as_text=True)).replace(address, "ADDRESS"),
            )
        )
    assert answers[0] == answers[1]


class SlowInbox(Inbox):
    """An SMTP server that takes longer than the app is willing to wait."""

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        await asyncio.sleep(3)
        return await super().handle_DATA(server, session, envelope)


async def test_slow_smtp_times_out_with_clear_error_and_no_code(
    make_app, redis_sync: Redis
) -> None:  # type: ignore[no-untyped-def]
    from aiosmtpd.controller import Controller

    from chat.embedded_redis import free_port as port_for_smtp

    slow = SlowInbox()
    port = port_for_smtp()
    controller = Controller(slow, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        app = await make_app(SMTP_URL=f"smtp://127.0.0.1:{port}", SMTP_TIMEOUT_SECONDS=1)
        client = app.test_client()
        started = asyncio.get_running_loop().time()
        response = await client.post("/login", form={"email": "slow@example.org"})
        elapsed = asyncio.get_running_loop().time() - started
        assert response.status_code == 503
        assert "send the code, try again in a minute" in await response.get_data(as_text=True)
        assert elapsed < 2.5  # gave up at the timeout, did not wait for the server
        assert redis_sync.keys("code:*") == []  # nothing half-done: no code without its email
    finally:
        controller.stop()


class RejectingInbox(Inbox):
    """An SMTP server that refuses every message."""

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        return "554 5.7.1 Rejected for testing"


async def test_smtp_rejection_shows_clear_error_and_no_code(make_app, redis_sync: Redis) -> None:  # type: ignore[no-untyped-def]
    from aiosmtpd.controller import Controller

    from chat.embedded_redis import free_port as port_for_smtp

    port = port_for_smtp()
    controller = Controller(RejectingInbox(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        app = await make_app(SMTP_URL=f"smtp://127.0.0.1:{port}")
        response = await app.test_client().post("/login", form={"email": "bounce@example.org"})
        assert response.status_code == 503
        assert "send the code, try again" in await response.get_data(as_text=True)
        assert redis_sync.keys("code:*") == []
    finally:
        controller.stop()
