"""Sign-in abuse (SECURITY.md, items 1-4 and 15): forged hosts, lock-outs, spread guessing,
plus-addresses and origins, each tried as an attacker would, against real Redis and SMTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from quart import Quart
from quart.testing.connections import WebsocketResponseError

from chat.settings import INT_SETTINGS
from tests.support import Inbox

# The limits as shipped (the other tests raise them), with a short resend window where a test
# asks twice from one network.
SHIPPED = {
    key: INT_SETTINGS[key]
    for key in (
        "CODE_SENDS_PER_EMAIL_PER_HOUR",
        "CODE_SENDS_PER_EMAIL_PER_NETWORK_PER_HOUR",
        "CODE_SENDS_PER_IP_PER_HOUR",
        "CODE_CHECKS_PER_IP_PER_HOUR",
        "CODE_CHECKS_PER_MINUTE",
        "CODE_RESEND_SECONDS",
    )
}


class Visitor:
    """A browser at one client address (behind the one trusted proxy the app is told about)."""

    def __init__(self, app: Quart, ip: str) -> None:
        self.client = app.test_client()
        self.headers = {"X-Forwarded-For": ip}

    async def ask(self, email: str) -> int:
        response = await self.client.post("/login", form={"email": email}, headers=self.headers)
        return response.status_code

    async def enter(self, email: str, code: str) -> tuple[int, str]:
        response = await self.client.post(
            "/login/code", form={"email": email, "code": code}, headers=self.headers
        )
        return response.status_code, await response.get_data(as_text=True)

    async def sign_in(self, inbox: Inbox, email: str) -> None:
        before = len(inbox.to(email))
        assert await self.ask(email) == 200
        status, page = await self.enter(email, await inbox.wait_for_code(email, after=before))
        assert status == 303, page


def wrong(code: str) -> str:
    return "00000000" if code != "00000000" else "11111111"


@contextlib.contextmanager
def warnings_of(name: str) -> Iterator[list[str]]:
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                seen.append(record.getMessage())

    handler = Keep()
    logging.getLogger(name).addHandler(handler)
    try:
        yield seen
    finally:
        logging.getLogger(name).removeHandler(handler)


# 1. The Host header never reaches an email, and foreign hosts are refused.


async def test_forged_host_is_refused_and_emails_name_the_configured_site(
    make_app: Any, inbox: Inbox
) -> None:
    app = await make_app(PUBLIC_URL="https://chat.example.org")
    client = app.test_client()
    forged = {"Host": "chat.example.org.evil.example:8080"}
    response = await client.post("/login", form={"email": "ada@example.org"}, headers=forged)
    assert response.status_code == 400
    assert inbox.messages == []
    with pytest.raises(WebsocketResponseError) as refused:
        async with client.websocket("/rooms/general/ws", headers=forged) as ws:
            await ws.receive()
    assert refused.value.response.status_code == 400
    assert (await client.get("/healthz", headers=forged)).status_code == 200  # probes use any

    ours = {"Host": "chat.example.org"}
    assert (
        await client.post("/login", form={"email": "ada@example.org"}, headers=ours)
    ).status_code == 200
    mail = inbox.to("ada@example.org")[-1]
    for part in ("plain", "html"):
        text = mail.get_body(preferencelist=(part,)).get_content()
        assert "chat.example.org" in text and "https://chat.example.org/login" in text
        assert "evil" not in text


async def test_origin_must_match_scheme_host_and_port(make_app: Any, inbox: Inbox) -> None:
    app = await make_app(PUBLIC_URL="http://localhost")
    client = app.test_client()
    for origin in ("https://localhost", "http://localhost:8080", "http://evil.example", "null"):
        response = await client.post(
            "/login", form={"email": "ada@example.org"}, headers={"Origin": origin}
        )
        assert response.status_code == 403, origin
        with pytest.raises(WebsocketResponseError):
            async with client.websocket("/rooms/general/ws", headers={"Origin": origin}) as ws:
                await ws.receive()
    assert inbox.messages == []
    same = await client.post(
        "/login", form={"email": "ada@example.org"}, headers={"Origin": "http://localhost:80"}
    )
    assert same.status_code == 200


# 2. A stranger elsewhere cannot lock a person out; an inbox still cannot be flooded.


async def test_strangers_cannot_lock_out_a_person_on_their_own_network(
    make_app: Any, inbox: Inbox
) -> None:
    app = await make_app(
        PROXY_HOPS=1,
        **{**SHIPPED, "CODE_RESEND_SECONDS": 1},
        SIGNIN_FAILURES_PER_EMAIL_BEFORE_LOCK=20,
    )
    ada = Visitor(app, "198.51.100.7")
    await ada.sign_in(inbox, "ada@example.org")  # her home network is known from now on
    await ada.client.post("/logout")

    strangers = [Visitor(app, f"203.0.113.{n}") for n in range(1, 13)]
    with warnings_of("chat.auth") as warnings:
        asked = [await stranger.ask("ada@example.org") for stranger in strangers]
    share = (
        SHIPPED["CODE_SENDS_PER_EMAIL_PER_HOUR"]
        - SHIPPED["CODE_SENDS_PER_EMAIL_PER_NETWORK_PER_HOUR"]
    )
    # Her own first sign-in came from a network unknown then: it used one of the strangers' share.
    assert asked.count(200) == share - 1 and asked.count(429) == len(strangers) - share + 1
    assert any("from 5 networks" in warning for warning in warnings)
    # The strangers who got a code (mailed to Ada, so they cannot read it) guess: 20 wrong
    # tries, the strangers' lock.
    for stranger in strangers[: share - 1]:
        for _ in range(5):
            await stranger.enter("ada@example.org", "12345678")
    last_stranger_code = await inbox.wait_for_code("ada@example.org", after=share - 1)
    status, page = await strangers[share - 2].enter("ada@example.org", last_stranger_code)
    assert status == 400 and "Too many wrong codes" in page  # strangers are locked out now

    await asyncio.sleep(1.1)  # her own resend window from her sign-in
    mails_before = len(inbox.to("ada@example.org"))
    assert await ada.ask("ada@example.org") == 200  # at once, whatever the strangers did
    code = await inbox.wait_for_code("ada@example.org", after=mails_before)
    status, page = await ada.enter("ada@example.org", code)
    assert status == 303, page
    assert len(inbox.to("ada@example.org")) <= SHIPPED["CODE_SENDS_PER_EMAIL_PER_HOUR"]


async def test_one_inbox_gets_at_most_the_hourly_cap_from_any_number_of_networks(
    make_app: Any, inbox: Inbox
) -> None:
    app = await make_app(PROXY_HOPS=1, **SHIPPED)
    for n in range(1, 31):
        await Visitor(app, f"192.0.2.{n}").ask("bob@example.org")
    share = (
        SHIPPED["CODE_SENDS_PER_EMAIL_PER_HOUR"]
        - SHIPPED["CODE_SENDS_PER_EMAIL_PER_NETWORK_PER_HOUR"]
    )
    assert len(inbox.to("bob@example.org")) == share  # strangers' share of the hourly cap


async def test_wrong_codes_lock_the_address_on_that_network_only(
    make_app: Any, inbox: Inbox
) -> None:
    app = await make_app(PROXY_HOPS=1, SIGNIN_FAILURES_BEFORE_LOCK=3, CODE_MAX_ATTEMPTS=10)
    guesser, owner = Visitor(app, "203.0.113.9"), Visitor(app, "198.51.100.20")
    assert await guesser.ask("eve@example.org") == 200
    code = await inbox.wait_for_code("eve@example.org")
    for _ in range(3):
        await guesser.enter("eve@example.org", wrong(code))
    status, page = await guesser.enter("eve@example.org", code)
    assert status == 400 and "Too many wrong codes" in page
    await owner.sign_in(inbox, "eve@example.org")  # another network: not locked


async def test_a_code_only_works_in_the_browser_that_asked_for_it(
    make_app: Any, inbox: Inbox
) -> None:
    app = await make_app(PROXY_HOPS=1)
    asker, elsewhere = Visitor(app, "198.51.100.30"), Visitor(app, "198.51.100.30")
    assert await asker.ask("cy@example.org") == 200
    code = await inbox.wait_for_code("cy@example.org")
    status, page = await elsewhere.enter("cy@example.org", code)  # same network, other browser
    assert status == 400 and "asked for in another browser" in page
    for _ in range(10):  # and guesses from elsewhere do not use up its tries
        await elsewhere.enter("cy@example.org", wrong(code))
    asker.headers = {"X-Forwarded-For": "203.0.113.30"}  # the same browser, a new network
    status, _ = await asker.enter("cy@example.org", f"{code[:4]} {code[4:]}")  # spaces are fine
    assert status == 303


# 3. Guessing spread over addresses and networks meets per-network and site-wide limits.


async def test_codes_per_ipv6_network_are_capped_across_addresses(
    make_app: Any, inbox: Inbox
) -> None:
    app = await make_app(PROXY_HOPS=1, **SHIPPED)
    statuses = [
        await Visitor(app, f"2001:db8:1:2::{n:x}").ask(f"user{n}@example.org")
        for n in range(1, 101)
    ]
    cap = SHIPPED["CODE_SENDS_PER_IP_PER_HOUR"]
    assert statuses.count(200) == cap and statuses.count(429) == 100 - cap
    assert len(inbox.messages) == cap
    assert await Visitor(app, "2001:db8:1:3::1").ask("other@example.org") == 200  # another /64


async def test_code_checks_per_network_are_capped(make_app: Any) -> None:
    app = await make_app(PROXY_HOPS=1, **SHIPPED)
    guesser = Visitor(app, "203.0.113.50")
    statuses = [
        (await guesser.enter(f"target{n % 50}@example.org", f"{n:08d}"))[0] for n in range(500)
    ]
    cap = SHIPPED["CODE_CHECKS_PER_IP_PER_HOUR"]
    assert statuses[:cap] == [400] * cap and set(statuses[cap:]) == {429}


async def guess_once(app: Quart, inbox: Inbox, ip: str, email: str) -> int:
    """A stranger asks for a code (it goes to the address's owner) and enters a wrong one."""
    stranger = Visitor(app, ip)
    assert await stranger.ask(email) == 200
    return (await stranger.enter(email, wrong(await inbox.wait_for_code(email))))[0]


async def test_site_wide_ceiling_on_wrong_codes_spares_people_on_their_own_network(
    make_app: Any, inbox: Inbox
) -> None:
    app = await make_app(PROXY_HOPS=1, CODE_CHECKS_PER_MINUTE=10)
    dora = Visitor(app, "198.51.100.40")
    await dora.sign_in(inbox, "dora@example.org")
    await dora.client.post("/logout")
    for n in range(1, 8):  # people who already signed in, guessed at from elsewhere
        await Visitor(app, "198.51.100.41").sign_in(inbox, f"known{n}@example.org")
    # Checks without a live code count for nothing site-wide: they cannot lock anyone out.
    for n in range(20):
        await Visitor(app, f"203.0.113.{n}").enter("nobody@example.org", "12345678")
    statuses = [
        await guess_once(app, inbox, f"192.0.2.{n}", f"known{1 + n % 7}@example.org")
        for n in range(12)
    ]
    assert statuses[:10] == [400] * 10 and statuses[10:] == [429, 429]
    await asyncio.sleep(1.1)  # CODE_RESEND_SECONDS=1 in tests
    await dora.sign_in(inbox, "dora@example.org")  # her known network is not refused


async def test_wrong_codes_for_never_seen_addresses_have_a_site_wide_budget(
    make_app: Any, inbox: Inbox
) -> None:
    app = await make_app(PROXY_HOPS=1, NEW_ADDRESS_FAILURES_PER_HOUR=3)
    await Visitor(app, "198.51.100.50").sign_in(inbox, "eve@example.org")
    statuses = [
        await guess_once(app, inbox, f"203.0.113.{n}", f"made-up{n}@example.org") for n in range(4)
    ]
    assert statuses == [400, 400, 400, 429]
    # An address that has signed in before is not held back by that budget.
    assert await guess_once(app, inbox, "203.0.113.99", "eve@example.org") == 400


async def test_an_ipv6_48_and_the_whole_site_have_send_caps_too(
    make_app: Any, inbox: Inbox
) -> None:
    app = await make_app(PROXY_HOPS=1, CODE_SENDS_PER_IP_PER_HOUR=2, CODE_SENDS_PER_HOUR=30)
    statuses = [
        await Visitor(app, f"2001:db8:7:{n:x}::1").ask(f"u{n}-{k}@example.org")
        for n in range(10)
        for k in range(2)
    ]
    assert statuses.count(200) == 16, statuses  # eight /64s' worth for the whole /48
    rest = [await Visitor(app, f"192.0.2.{n}").ask(f"v{n}@example.org") for n in range(20)]
    assert rest.count(200) == 14 and set(rest[14:]) == {429}, rest  # 30 for the site in all


# 4. Plus-addresses share the caps of the inbox they reach, not its identity.


async def test_plus_addresses_share_their_inboxs_caps(make_app: Any, inbox: Inbox) -> None:
    app = await make_app(
        PROXY_HOPS=1,
        CODE_SENDS_PER_EMAIL_PER_NETWORK_PER_HOUR=2,
        CODE_SENDS_PER_EMAIL_PER_HOUR=5,
        CODE_RESEND_SECONDS=1,
    )
    visitor = Visitor(app, "198.51.100.60")
    assert await visitor.ask("fay+1@example.org") == 200
    assert await visitor.ask("fay+2@example.org") == 429  # one resend window for the inbox
    await asyncio.sleep(1.1)
    assert await visitor.ask("fay+2@example.org") == 200
    await asyncio.sleep(1.1)
    assert await visitor.ask("fay+3@example.org") == 429  # one hourly cap for the inbox
    assert [len(inbox.to(f"fay+{n}@example.org")) for n in (1, 2, 3)] == [1, 1, 0]
    # Caps are shared; identities are not: each address signs in as itself.
    code = await inbox.wait_for_code("fay+2@example.org")
    assert (await visitor.enter("fay+1@example.org", code))[0] == 400
    assert (await visitor.enter("fay+2@example.org", code))[0] == 303
    home = await (await visitor.client.get("/", headers=visitor.headers)).get_data(as_text=True)
    assert "fay+2" in home
