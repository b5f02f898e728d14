"""Rooms over the websocket: fan-out, backfill, presence, bad input, limits."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from quart import Quart
from quart.testing.connections import WebsocketDisconnectError, WebsocketResponseError
from redis import Redis

from chat import live_room, people, presence, store
from tests.conftest import sign_in, text_of
from tests.support import Inbox, stored_bodies

MESSAGE_ID = re.compile(r'id="m-(\d+-\d+)"')


async def signed_in_client(app: Quart, inbox: Inbox, address: str) -> Any:
    client = app.test_client()
    await sign_in(client, inbox, address)
    return client


async def receive_until(ws: Any, needle: str, timeout: float = 5) -> list[str]:
    """Frames received up to and including the first one containing `needle`."""
    frames: list[str] = []
    async with asyncio.timeout(timeout):
        while True:
            frame = await ws.receive()
            frames.append(frame)
            if needle in frame:
                return frames


async def send(ws: Any, body: str, client_id: str = "client-0001") -> None:
    await ws.send(
        json.dumps({"body": body, "client_id": client_id, "headers": {"HX-Request": "true"}})
    )


async def test_message_fans_out_to_every_socket(app: Quart, inbox: Inbox) -> None:
    alice = await signed_in_client(app, inbox, "alice@example.org")
    bob = await signed_in_client(app, inbox, "bob@example.org")
    async with alice.websocket("/rooms/general/ws") as a, bob.websocket("/rooms/general/ws") as b:
        await receive_until(a, 'id="online"')
        await receive_until(b, 'id="online"')
        await send(a, "hello bob")
        a_frames = await receive_until(a, "hello bob")
        b_frames = await receive_until(b, "hello bob")
        assert a_frames[-1] == b_frames[-1]  # the same bytes for every viewer
        assert 'hx-swap-oob="upsert"' in b_frames[-1] and ">alice<" in b_frames[-1]
        assert "<time datetime=" in b_frames[-1]
        # The sender also gets a fresh form (before or after its own message arrives).
        if not any('id="compose"' in frame for frame in a_frames):
            a_frames = await receive_until(a, 'id="compose"')
        reset = next(frame for frame in a_frames if 'id="compose"' in frame)
        assert 'hx-swap-oob="true"' in reset and 'value=""' not in reset
        assert not any('id="compose"' in frame for frame in b_frames)  # only for the sender


async def test_message_is_stored_once_per_client_id(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    alice = await signed_in_client(app, inbox, "alice@example.org")
    async with alice.websocket("/rooms/general/ws") as a:
        await send(a, "only once", client_id="same-id-123")
        await receive_until(a, 'id="compose"')
        await send(a, "only once", client_id="same-id-123")
        await receive_until(a, 'id="compose"')
    assert stored_bodies(redis_sync) == ["only once"]


async def test_two_apps_share_one_redis(make_app: Any, inbox: Inbox) -> None:
    first, second = await make_app(), await make_app()
    alice = await signed_in_client(first, inbox, "alice@example.org")
    bob = await signed_in_client(second, inbox, "bob@example.org")
    async with alice.websocket("/rooms/general/ws") as a, bob.websocket("/rooms/general/ws") as b:
        await receive_until(b, 'id="online"')
        await send(a, "across workers")
        frames = await receive_until(b, "across workers")
        assert "alice" in text_of(frames[-1])


async def test_backfill_sends_exactly_what_was_missed(app: Quart, inbox: Inbox) -> None:
    alice = await signed_in_client(app, inbox, "alice@example.org")
    bob = await signed_in_client(app, inbox, "bob@example.org")
    async with alice.websocket("/rooms/general/ws") as a:
        await send(a, "earlier", client_id="id-before-1")
        frames = await receive_until(a, "earlier")
        last_seen = MESSAGE_ID.findall(frames[-1])[-1]
        for n in range(3):
            await send(a, f"missed {n}", client_id=f"id-missed-{n}")
            await receive_until(a, f"missed {n}")
    async with bob.websocket(f"/rooms/general/ws?after={last_seen}") as b:
        first = await b.receive()
        assert re.findall(r"missed \d", first) == ["missed 0", "missed 1", "missed 2"]
        assert "earlier" not in first
    async with bob.websocket("/rooms/general/ws") as b:
        page = await b.receive()
        assert 'hx-swap-oob="innerHTML"' in page
        assert re.findall(r"earlier|missed \d", page) == [
            "earlier",
            "missed 0",
            "missed 1",
            "missed 2",
        ]


async def test_presence_joined_and_left_once(app: Quart, inbox: Inbox) -> None:
    alice = await signed_in_client(app, inbox, "alice@example.org")
    bob = await signed_in_client(app, inbox, "bob@example.org")
    async with bob.websocket("/rooms/general/ws") as watcher:
        await receive_until(watcher, 'id="online"')
        tab1 = alice.websocket("/rooms/general/ws")
        tab2 = alice.websocket("/rooms/general/ws")
        await tab1.__aenter__()
        frames = await receive_until(watcher, "alice joined")
        assert "alice" in text_of(frames[-1].split('id="online"')[1])
        await tab2.__aenter__()
        await receive_until(tab2, 'id="online"')
        await tab1.__aexit__(None, None, None)
        await tab2.__aexit__(None, None, None)
        frames = await receive_until(watcher, "alice left", timeout=10)  # after the linger
        joined_or_left = [f for f in frames if "alice joined" in f or "alice left" in f]
        assert len(joined_or_left) == 1  # no "joined" for the second tab, one "left" at the end
        online = frames[-1].split('id="online"')[1]
        assert "alice" not in text_of(online) and "bob" in text_of(online)


async def test_online_list_names_the_first_hundred_and_counts_the_others(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    """A big room's arrivals carry a bounded list: 100 names by name, the others counted;
    a person counts once however many tabs they have, until their last socket expires."""
    async with app.app_context():
        redis = store.redis()
        for n in range(103):
            person, address = f"p{n:03d}", f"user{n}@example.org"
            redis_sync.hset(
                people.person_key(person, "profile"),
                mapping={"email": address, "name": f"user {n:03d}"},
            )
            for tab in range(3):
                await presence.join(
                    redis, "general", presence.user_of(person, address), f"{n}-{tab}"
                )
        shown, total = await presence.online(redis, "general")
        assert total == 103 and [name for _, name in shown] == [f"user {n:03d}" for n in range(100)]
        first = presence.user_of("p000", "user0@example.org")
        redis_sync.zadd("presence:{r:general}:exp", {f"{first}\x1f0-{tab}": 1 for tab in range(3)})
        assert await presence.expire(redis, "general") == [first]
        shown, total = await presence.online(redis, "general")
        assert total == 102 and shown[0][1] == "user 001"
    viewer = await signed_in_client(app, inbox, "viewer@example.org")
    page = await (await viewer.get("/rooms/general")).get_data(as_text=True)
    online = text_of(page.split('id="online"')[1].split("</ul>")[0])
    assert "user 001" in online and "user 100" in online and "user 101" not in online
    assert "and 2 more" in online
    async with viewer.websocket("/rooms/general/ws") as ws:  # the viewer joins: 103 online
        frame = (await receive_until(ws, "viewer joined"))[-1]
        assert "and 3 more" in text_of(frame.split('id="online"')[1])


async def test_a_big_room_gets_its_online_list_at_most_every_two_seconds(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    """Past 50 people online, arrivals are told at once and the list follows within
    LIST_SECONDS (one list per window, not one per arrival, to every socket)."""
    async with app.app_context():
        redis = store.redis()
        for n in range(live_room.LIST_EVERY_CHANGE_UP_TO):
            person, address = f"p{n:03d}", f"user{n}@example.org"
            redis_sync.hset(
                people.person_key(person, "profile"),
                mapping={"email": address, "name": f"user {n:03d}"},
            )
            await presence.join(redis, "general", presence.user_of(person, address), f"{n}")
    bob = await signed_in_client(app, inbox, "bob@example.org")
    alice = await signed_in_client(app, inbox, "alice@example.org")
    async with bob.websocket("/rooms/general/ws") as watcher:
        joined = (await receive_until(watcher, "bob joined"))[-1]
        assert 'id="online"' in joined  # the window's first change carries the list
        async with alice.websocket("/rooms/general/ws"):
            joined = (await receive_until(watcher, "alice joined"))[-1]
            assert 'id="online"' not in joined  # within the window: the notice alone
            started = asyncio.get_running_loop().time()
            listed = (await receive_until(watcher, 'id="online"'))[-1]
            waited = asyncio.get_running_loop().time() - started
            assert "alice" in text_of(listed.split('id="online"')[1])
            assert waited <= live_room.LIST_SECONDS + 1


async def test_a_new_socket_gets_the_online_list_as_it_is_now(app: Quart, inbox: Inbox) -> None:
    """The worker keeps the list it sends new sockets (chat/online_lists.py): an arrival and a
    rename must show in the next socket's list at once, not when the kept one ages out."""
    alice = await signed_in_client(app, inbox, "alice@example.org")
    bob = await signed_in_client(app, inbox, "bob@example.org")

    async def list_of_new_tab() -> str:
        async with alice.websocket("/rooms/general/ws") as tab:
            frames = await receive_until(tab, 'id="online"')
            return text_of(frames[-1].split('id="online"')[1].split("</ul>")[0])

    async with alice.websocket("/rooms/general/ws") as first:
        await receive_until(first, "alice joined")
        assert "alice" in await list_of_new_tab() and "bob" not in await list_of_new_tab()
        await bob.get("/rooms/general")  # as a browser does: the page, then its socket
        async with bob.websocket("/rooms/general/ws") as watcher:
            await receive_until(first, "bob joined")
            assert "bob" in await list_of_new_tab()
            renamed = await bob.post(
                "/settings", form={"display_name": "Robert", "locale": "en", "time_zone": "UTC"}
            )
            assert renamed.status_code in (200, 303)
            await receive_until(first, "Robert")
            assert "Robert" in await list_of_new_tab()
            assert "Robert" in text_of((await receive_until(watcher, "Robert"))[-1])


async def test_markup_arrives_escaped(app: Quart, inbox: Inbox) -> None:
    alice = await signed_in_client(app, inbox, "alice@example.org")
    async with alice.websocket("/rooms/general/ws") as a:
        for n, payload in enumerate(
            ["<img src=x onerror=alert(1)>", '<div id="messages" hx-swap-oob="true">x</div>']
        ):
            await send(a, payload, client_id=f"xss-attempt-{n}")
            frame = (await receive_until(a, "&lt;"))[-1]
            assert "<img" not in frame and 'hx-swap-oob="true">x' not in frame
            assert (
                "&lt;img src=x onerror=alert(1)&gt;" in frame
                or "&lt;div id=&#34;messages&#34;" in frame
            )


async def test_links_are_safe(app: Quart, inbox: Inbox) -> None:
    alice = await signed_in_client(app, inbox, "alice@example.org")
    async with alice.websocket("/rooms/general/ws") as a:
        await send(a, "see https://example.org/a?b=1&c=2 and javascript:alert(1)")
        frame = (await receive_until(a, "example.org/a"))[-1]
        assert (
            '<a href="https://example.org/a?b=1&amp;c=2" rel="nofollow noopener noreferrer"'
            in frame
        )
        assert 'href="javascript' not in frame


async def test_too_long_message_is_rejected_for_sender_only(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    alice = await signed_in_client(app, inbox, "alice@example.org")
    async with alice.websocket("/rooms/general/ws") as a:
        await send(a, "x" * 4001)
        frame = (await receive_until(a, "compose-error"))[-1]
        assert "at most 4,000 characters" in frame
        await send(a, "   \n  ")  # whitespace only: ignored
        await send(a, "fine")
        await receive_until(a, "fine")
    assert stored_bodies(redis_sync) == ["fine"]


@pytest.mark.parametrize(
    ("frame", "code"),
    [("not json", 1003), ("[1, 2]", 1003), (b"\x00\x01", 1003), ("x" * 70000, 1009)],
)
async def test_bad_frames_close_the_socket(
    app: Quart, inbox: Inbox, frame: str | bytes, code: int
) -> None:
    alice = await signed_in_client(app, inbox, "alice@example.org")
    async with alice.websocket("/rooms/general/ws") as a:
        await receive_until(a, 'id="online"')
        await a.send(frame)
        with pytest.raises(WebsocketDisconnectError) as closed:
            async with asyncio.timeout(5):
                while True:
                    await a.receive()
        assert closed.value.args[0] == code
    response = await alice.get("/rooms/general")
    assert response.status_code == 200  # the worker is fine


async def test_socket_refused_without_session_or_room(app: Quart, inbox: Inbox) -> None:
    anonymous = app.test_client()
    with pytest.raises(WebsocketResponseError) as refused:
        async with anonymous.websocket("/rooms/general/ws") as ws:
            await ws.receive()
    assert refused.value.response.status_code == 401
    alice = await signed_in_client(app, inbox, "alice@example.org")
    with pytest.raises(WebsocketResponseError) as refused:
        async with alice.websocket("/rooms/nowhere/ws") as ws:
            await ws.receive()
    assert refused.value.response.status_code == 404
    with pytest.raises(WebsocketResponseError) as refused:
        async with alice.websocket(
            "/rooms/general/ws", headers={"Origin": "https://evil.example"}
        ) as ws:
            await ws.receive()
    assert refused.value.response.status_code == 403


async def test_sign_out_closes_open_sockets(app: Quart, inbox: Inbox) -> None:
    alice = await signed_in_client(app, inbox, "alice@example.org")
    async with alice.websocket("/rooms/general/ws") as a:
        await receive_until(a, 'id="online"')
        await alice.post("/logout")
        with pytest.raises(WebsocketDisconnectError) as closed:
            async with asyncio.timeout(1):
                while True:
                    await a.receive()
        assert closed.value.args[0] == 1008


async def test_room_pages(app: Quart, inbox: Inbox) -> None:
    alice = await signed_in_client(app, inbox, "alice@example.org")
    home = await (await alice.get("/")).get_data(as_text=True)
    assert (
        "general" in home
        and '<label for="room-name">Room name</label>' in home
        and ">Create room</button>" in home
    )
    created = await alice.post("/rooms", form={"name": "Café Talk!"})
    assert created.status_code == 303 and created.headers["Location"] == "/rooms/cafe-talk"
    page = await (await alice.get("/rooms/cafe-talk")).get_data(as_text=True)
    assert "Café Talk!" in page and 'hx-ws:connect="/rooms/cafe-talk/ws' in page
    assert 'role="log"' in page and 'aria-live="polite"' in page
    assert (
        '<label for="compose-body" class="visually-hidden">Message</label>' in page
        and ">Send</button>" in page
    )
    assert ">Online</h2>" in page
    bad = await alice.post("/rooms", form={"name": "!!!"})
    assert bad.status_code == 400 and "at least one letter or digit" in await bad.get_data(
        as_text=True
    )
    missing = await alice.get("/rooms/nowhere")
    assert missing.status_code == 404 and "Not found" in await missing.get_data(as_text=True)


async def test_history_paging(app: Quart, inbox: Inbox, redis_sync: Redis) -> None:
    alice = await signed_in_client(app, inbox, "alice@example.org")
    for n in range(60):
        redis_sync.xadd(
            "{r:general}:stream", {"author": "a@x.org", "name": "a", "body": f"old {n}", "ts": "0"}
        )
    page = await (await alice.get("/rooms/general")).get_data(as_text=True)
    shown = re.findall(r"old (\d+)<", page)
    assert shown == [str(n) for n in range(10, 60)]
    older_url = re.search(r'hx-get="(/rooms/general/older\?before=[^"]+)"', page).group(1)
    older = await (await alice.get(older_url.replace("&amp;", "&"))).get_data(as_text=True)
    assert re.findall(r"old (\d+)<", older) == [str(n) for n in range(10)]
    assert "This is the beginning of the room." in older


async def test_sockets_per_session_are_capped(
    make_app: Any, inbox: Inbox, redis_sync: Redis
) -> None:
    app = await make_app(WS_MAX_SOCKETS_PER_SESSION=2)
    alice = await signed_in_client(app, inbox, "alice@example.org")
    async with (
        alice.websocket("/rooms/general/ws") as one,
        alice.websocket("/rooms/general/ws") as two,
    ):
        await receive_until(one, 'id="online"')
        await receive_until(two, 'id="online"')
        async with alice.websocket("/rooms/general/ws") as three:
            frames = []
            with pytest.raises(WebsocketDisconnectError) as closed:
                async with asyncio.timeout(5):
                    while True:
                        frames.append(await three.receive())
            assert closed.value.args[0] == 1008
            assert "Too many open tabs" in "".join(frames)
    # The server gives a socket's allowance back once it has seen it close.
    async with asyncio.timeout(5):
        while any(redis_sync.zcard(key) for key in redis_sync.keys("session-sockets:*")):
            await asyncio.sleep(0.02)
    async with alice.websocket("/rooms/general/ws") as again:  # the allowance came back
        await receive_until(again, 'id="online"')


async def test_rate_limit_notice_then_close_on_persistent_abuse(
    make_app: Any, inbox: Inbox, redis_sync: Redis
) -> None:
    app = await make_app(WS_MESSAGES_PER_SECOND=1, WS_BURST=3)
    alice = await signed_in_client(app, inbox, "alice@example.org")
    async with alice.websocket("/rooms/general/ws") as a:
        for n in range(4):
            await send(a, f"burst {n}", client_id=f"burst-msg-{n:03d}")
        await receive_until(a, "Slow down: you are sending messages too fast.")
        for n in range(4, 30):
            await send(a, f"burst {n}", client_id=f"burst-msg-{n:03d}")
        with pytest.raises(WebsocketDisconnectError) as closed:
            async with asyncio.timeout(5):
                while True:
                    await a.receive()
        assert closed.value.args[0] == 1008
    stored = stored_bodies(redis_sync)
    assert stored[:3] == ["burst 0", "burst 1", "burst 2"] and len(stored) <= 4


async def test_sending_without_javascript_is_a_plain_form_post(app: Quart, inbox: Inbox) -> None:
    alice = await signed_in_client(app, inbox, "alice@example.org")
    response = await alice.post(
        "/rooms/general/messages", form={"body": "no script here", "client_id": "nojs-message-1"}
    )
    assert response.status_code == 303 and response.headers["Location"] == "/rooms/general"
    page = await (await alice.get("/rooms/general")).get_data(as_text=True)
    assert "no script here" in page
    anonymous = app.test_client()
    refused = await anonymous.post("/rooms/general/messages", form={"body": "spam"})
    assert refused.status_code == 302 and refused.headers["Location"] == "/login"
    too_long = await alice.post("/rooms/general/messages", form={"body": "y" * 4001})
    assert too_long.status_code == 400 and "at most 4,000 characters" in await too_long.get_data(
        as_text=True
    )
