"""A hostile member (SECURITY.md, items 5-14): floods, crafted frames and parameters, look-alike
names and people, sessions that should be over; each tried as an attacker would."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from quart import Quart
from quart.testing.connections import WebsocketDisconnectError, WebsocketResponseError
from redis import Redis

from chat.people import hue
from tests.conftest import text_of
from tests.support import Inbox, stored_bodies
from tests.test_live import receive_until, send, signed_in_client


async def closed_with(ws: Any, timeout: float = 5) -> tuple[int, list[str]]:
    """Read until the server closes: (close code, frames received before it)."""
    frames: list[str] = []
    with pytest.raises(WebsocketDisconnectError) as closed:
        async with asyncio.timeout(timeout):
            while True:
                frames.append(await ws.receive())
    return closed.value.args[0], frames


# 5. One send rate per session, whichever route a message takes.


async def test_the_no_js_route_and_the_socket_share_one_send_rate(
    make_app: Any, inbox: Inbox, redis_sync: Redis
) -> None:
    app = await make_app(WS_MESSAGES_PER_SECOND=1, WS_BURST=5)
    alice = await signed_in_client(app, inbox, "alice@example.org")
    statuses = [
        (await alice.post("/rooms/general/messages", form={"body": f"post {n}"})).status_code
        for n in range(30)
    ]
    assert statuses[:5] == [303] * 5 and statuses.count(429) >= 24
    refused = await alice.post("/rooms/general/messages", form={"body": "one more"})
    assert "sending messages too fast" in await refused.get_data(as_text=True)
    async with alice.websocket("/rooms/general/ws") as ws:  # the socket finds the bucket empty
        await send(ws, "by socket", client_id="socket-after-posts")
        await receive_until(ws, "Slow down: you are sending messages too fast.")
    stored = stored_bodies(redis_sync)
    assert len(stored) <= 6 and "by socket" not in stored


# 6. Rooms: capped per person and overall; the lists stay small.


async def test_room_creation_is_capped_per_person_and_overall(
    make_app: Any, inbox: Inbox, redis_sync: Redis
) -> None:
    app = await make_app(ROOMS_PER_PERSON_PER_HOUR=3, MAX_ROOMS=5)
    alice = await signed_in_client(app, inbox, "alice@example.org")
    made = [(await alice.post("/rooms", form={"name": f"room {n}"})).status_code for n in range(3)]
    assert made == [303, 303, 303]
    refused = await alice.post("/rooms", form={"name": "room 3"})
    assert refused.status_code == 429
    assert "You can make 3 rooms an hour" in await refused.get_data(as_text=True)
    opened = await alice.post("/rooms", form={"name": "Room 1"})  # an existing one still opens
    assert opened.status_code == 303 and opened.headers["Location"] == "/rooms/room-1"
    bob = await signed_in_client(app, inbox, "bob@example.org")
    assert (await bob.post("/rooms", form={"name": "bob's"})).status_code == 303
    full = await bob.post("/rooms", form={"name": "one too many"})
    assert full.status_code == 429
    assert "reached its limit of 5 rooms" in await full.get_data(as_text=True)
    assert redis_sync.hlen("rooms") == 5  # general, three of Alice's, one of Bob's


async def test_room_lists_are_paged_and_the_sidebar_holds_only_ones_own(
    make_app: Any, inbox: Inbox
) -> None:
    app = await make_app(ROOMS_PER_PERSON_PER_HOUR=1000)
    bob = await signed_in_client(app, inbox, "bob@example.org")
    for n in range(120):
        await bob.post("/rooms", form={"name": f"topic {n:03d}"})
    alice = await signed_in_client(app, inbox, "alice@example.org")
    home = text_of(await (await alice.get("/")).get_data(as_text=True))
    assert "general" in home and "topic" not in home  # only her rooms, and a way to all
    room = await (await alice.get("/rooms/general")).get_data(as_text=True)
    assert "topic" not in room and 'href="/rooms">All rooms</a>' in room
    names: list[str] = []
    url: str | None = "/rooms"
    while url:
        page = await (await alice.get(url)).get_data(as_text=True)
        names += re.findall(r'room-card-name">([^<]+)<', page)
        found = re.search(r'href="(/rooms\?after=[^"]+)">More rooms<', page)
        url = found.group(1) if found else None
    assert names == ["general", *(f"topic {n:03d}" for n in range(120))]
    assert (await alice.get("/rooms?after=Not%20a%20slug")).status_code == 400
    await alice.get("/rooms/topic-007")  # opened once: now it is hers
    assert "topic 007" in text_of(await (await alice.get("/")).get_data(as_text=True))


# 7. Rejected frames cost a token each, and a socket that keeps sending them is closed.


async def test_a_flood_of_rejected_frames_is_cut_off(app: Quart, inbox: Inbox) -> None:
    alice = await signed_in_client(app, inbox, "alice@example.org")
    async with alice.websocket("/rooms/general/ws") as ws:
        await receive_until(ws, 'id="online"')
        for _ in range(500):
            await ws.send(json.dumps({"nonsense": True}))
        code, frames = await closed_with(ws)
    assert code == 1008
    replies = sum(frame.count("compose-error") for frame in frames)
    assert replies <= 21  # WS_BURST (20) rejected replies, then the close
    assert (await alice.get("/healthz")).status_code == 200


# 8. Reconnecting in a loop is refused before the upgrade; short absences are not news.


async def test_handshakes_per_session_are_limited(make_app: Any, inbox: Inbox) -> None:
    app = await make_app(WS_HANDSHAKES_PER_MINUTE=5)
    alice = await signed_in_client(app, inbox, "alice@example.org")
    for _ in range(5):
        async with alice.websocket("/rooms/general/ws") as ws:
            await receive_until(ws, 'id="online"')
    with pytest.raises(WebsocketResponseError) as refused:
        async with alice.websocket("/rooms/general/ws") as ws:
            await ws.receive()
    assert refused.value.response.status_code == 429


async def test_leaving_and_coming_back_at_once_announces_nothing(app: Quart, inbox: Inbox) -> None:
    alice = await signed_in_client(app, inbox, "alice@example.org")
    bob = await signed_in_client(app, inbox, "bob@example.org")
    async with bob.websocket("/rooms/general/ws") as watcher:
        await receive_until(watcher, 'id="online"')
        async with alice.websocket("/rooms/general/ws") as tab:
            await receive_until(watcher, "alice joined")
            await receive_until(tab, 'id="online"')
        for _ in range(10):  # a reload, a tab brought back, a reconnect loop
            async with alice.websocket("/rooms/general/ws") as tab:
                await receive_until(tab, 'id="online"')
        await send(watcher, "still here?", client_id="watcher-probe-1")
        frames = await receive_until(watcher, "still here?")
        assert not any("alice left" in f or "alice joined" in f for f in frames)
        frames = await receive_until(watcher, "alice left", timeout=10)  # gone for good
        assert not any("alice joined" in f for f in frames)


# 9. Sessions per person are capped: a new sign-in ends the oldest.


async def test_a_new_sign_in_beyond_the_cap_ends_the_oldest_session(
    make_app: Any, inbox: Inbox
) -> None:
    app = await make_app(MAX_SESSIONS_PER_PERSON=3)
    first = await signed_in_client(app, inbox, "alice@example.org")
    async with first.websocket("/rooms/general/ws") as ws:
        await receive_until(ws, 'id="online"')
        others = []
        for _ in range(3):
            await asyncio.sleep(1.1)  # CODE_RESEND_SECONDS=1 in tests
            others.append(await signed_in_client(app, inbox, "alice@example.org"))
        code, frames = await closed_with(ws)
        assert code == 1008 and "You are signed out" in "".join(frames)
    assert (await first.get("/")).status_code == 302
    assert [(await other.get("/")).status_code for other in others] == [200, 200, 200]


# 10. A session that ended closes its sockets, however it ended.


async def test_an_idle_session_cannot_send_over_an_open_socket(
    make_app: Any, inbox: Inbox, redis_sync: Redis
) -> None:
    app = await make_app(SESSION_IDLE_SECONDS=2)
    alice = await signed_in_client(app, inbox, "alice@example.org")
    async with alice.websocket("/rooms/general/ws") as ws:
        await receive_until(ws, 'id="online"')
        await send(ws, "while active", client_id="active-message-1")
        await receive_until(ws, "while active")
        await asyncio.sleep(3)  # idle past the timeout
        await send(ws, "too late", client_id="late-message-01")
        code, frames = await closed_with(ws)
    assert code == 1008 and "You are signed out" in "".join(frames)
    assert stored_bodies(redis_sync) == ["while active"]


@pytest.mark.parametrize(
    "noticed_by",
    [
        "pubsub gap",  # a sign-out published while pub/sub was down is lost: re-check after
        pytest.param("heartbeat", marks=pytest.mark.slow),  # an idle expiry publishes nothing
    ],
)
async def test_sockets_of_a_session_that_silently_ended_are_closed(
    app: Quart, inbox: Inbox, redis_sync: Redis, noticed_by: str
) -> None:
    alice = await signed_in_client(app, inbox, "alice@example.org")
    async with alice.websocket("/rooms/general/ws") as ws:
        await receive_until(ws, 'id="online"')
        for key in redis_sync.scan_iter("session:*"):
            redis_sync.delete(key)
        if noticed_by == "pubsub gap":
            redis_sync.client_kill_filter(_type="pubsub")
        code, frames = await closed_with(ws, timeout=15)  # within one heartbeat (10 s)
    assert code == 1008 and "You are signed out" in "".join(frames)


# 11. Frames that used to crash the handler.


async def test_deep_nesting_and_lone_surrogates_do_not_crash_the_socket(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    alice = await signed_in_client(app, inbox, "alice@example.org")
    async with alice.websocket("/rooms/general/ws") as ws:
        await receive_until(ws, 'id="online"')
        await ws.send('{"body": "a\\ud800b", "client_id": "surrogate-01"}')
        await receive_until(ws, ">ab<")
        await ws.send("[" * 20000)
        code, _ = await closed_with(ws)
    assert code == 1003
    assert stored_bodies(redis_sync) == ["ab"]


# 12. Stream ids in parameters: ASCII digits within 64 bits, or refused.


@pytest.mark.parametrize(
    ("before", "status"),
    [
        ("99999999999999999999-0", 400),
        ("١٢٣-٤", 400),
        ("1-2-3", 400),
        ("", 400),
        ("0-0", 200),
        ("18446744073709551615-18446744073709551615", 200),
    ],
)
async def test_older_accepts_only_64_bit_ascii_ids(
    app: Quart, inbox: Inbox, before: str, status: int
) -> None:
    alice = await signed_in_client(app, inbox, "alice@example.org")
    response = await alice.get("/rooms/general/older", query_string={"before": before})
    assert response.status_code == status


@pytest.mark.parametrize(
    "after", ["18446744073709551615-18446744073709551615", "١٢٣-٤", "99999999999999999999-1"]
)
async def test_socket_ignores_or_handles_any_after(
    app: Quart, inbox: Inbox, redis_sync: Redis, after: str
) -> None:
    redis_sync.xadd(
        "{r:general}:stream", {"author": "a@x.org", "name": "a", "body": "hi", "ts": "0"}
    )
    alice = await signed_in_client(app, inbox, "alice@example.org")
    async with alice.websocket("/rooms/general/ws", query_string={"after": after}) as ws:
        await receive_until(ws, 'id="online"')
        await send(ws, "still works", client_id="after-probe-01")
        await receive_until(ws, "still works")


# 13. Hidden characters never reach names or bodies; look-alike room names are refused.


async def test_controls_and_bidi_overrides_are_stripped(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    alice = await signed_in_client(app, inbox, "alice@example.org")
    made = await alice.post("/rooms", form={"name": "\u202elareneg"})
    assert made.headers["Location"] == "/rooms/lareneg"
    assert redis_sync.hget("rooms", "lareneg") == "lareneg"
    await alice.post("/rooms", form={"name": "\x00x\x07y"})
    assert redis_sync.hget("rooms", "xy") == "xy"
    async with alice.websocket("/rooms/general/ws") as ws:
        await send(ws, "\u2066evil\u2069 \u202egnp.exe\x00 👩\u200d💻", client_id="bidi-body-01")
        await receive_until(ws, "gnp.exe")
    assert stored_bodies(redis_sync) == [
        "evil gnp.exe 👩\u200d💻"  # the emoji's zero-width joiner stays
    ]


async def test_a_room_name_that_looks_like_another_is_refused(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    alice = await signed_in_client(app, inbox, "alice@example.org")
    await alice.get("/rooms/general")
    for name in ("g\u0435neral", "GENERAL\u200b", "\u0261eneral", "gener\u0430l"):
        refused = await alice.post("/rooms", form={"name": name}, headers={"HX-Request": "true"})
        page = await refused.get_data(as_text=True)
        if refused.status_code == 200:  # same slug: opens #general itself
            assert refused.headers["HX-Redirect"] == "/rooms/general", name
            continue
        assert refused.status_code == 400, name
        assert "looks like the room “general”" in page
    assert sorted(redis_sync.hkeys("rooms")) == ["general"]


# 14. Two people whose addresses share a local part can be told apart (by their person ids
# and avatar colours; nobody but an admin sees their addresses).


async def test_people_with_the_same_local_part_look_different(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    corp = await signed_in_client(app, inbox, "alice@corp.example")
    evil = await signed_in_client(app, inbox, "alice@evil.example")
    async with corp.websocket("/rooms/general/ws") as a, evil.websocket("/rooms/general/ws") as b:
        await receive_until(a, 'id="online"')
        online = (await receive_until(b, 'id="online"'))[-1]
        while online.count("data-person=") < 2:
            online = (await receive_until(b, 'id="online"'))[-1]
        assert len(set(re.findall(r'data-person="([0-9a-f]{16})"', online))) == 2
        assert "corp.example" not in online and "evil.example" not in online
        await send(a, "from corp", client_id="corp-message-1")
        seen = "".join(await receive_until(b, "from corp"))
        await send(b, "from evil", client_id="evil-message-1")
        seen += "".join(await receive_until(b, "from evil"))
    articles = re.findall(r"<article.*?</article>", seen, re.S)
    corp_html = next(html for html in articles if "from corp" in html)
    evil_html = next(html for html in articles if "from evil" in html)
    people = redis_sync.hgetall("people:by-email")
    assert len(set(people.values())) == 2
    for html, address in ((corp_html, "alice@corp.example"), (evil_html, "alice@evil.example")):
        person = re.search(r'data-author="([0-9a-f]+)"', html).group(1)
        assert person in people.values() and address not in person
        assert address not in html and "example" not in html  # no address, no domain
        assert f"hue-{hue(person)}" in html  # the colour comes from the person id


async def test_look_alike_addresses_are_refused_or_shown_as_they_are(
    app: Quart, inbox: Inbox
) -> None:
    stranger = app.test_client()
    mixed = await stranger.post("/login", form={"email": "alice@c\u03bfrp.example"})
    assert mixed.status_code == 400 and inbox.messages == []  # Latin with a Greek omicron
    # "copp" spelt in Cyrillic looks Latin: it may sign in, but is shown as xn--.
    cyrillic = app.test_client()
    await cyrillic.post("/login", form={"email": "alice@\u0441\u043e\u0440\u0440.example"})
    code = await inbox.wait_for_code("alice@xn--n1aeab.example")
    await cyrillic.post(
        "/login/code", form={"email": "alice@\u0441\u043e\u0440\u0440.example", "code": code}
    )
    async with cyrillic.websocket("/rooms/general/ws") as ws:
        online = (await receive_until(ws, 'id="online"'))[-1]
    # The Online list names people, never their addresses, in either form.
    assert "xn--n1aeab" not in online and "\u0441\u043e\u0440\u0440" not in online
    assert ">alice</a>" in online
