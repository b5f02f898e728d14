"""Admins: /admin (bans, bots, the log), a room's rules, and who may do any of it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from quart import Quart
from quart.testing.connections import WebsocketDisconnectError
from redis import Redis

from chat import moderation
from tests.conftest import sign_in, text_of
from tests.support import Inbox, stored_bodies

ADA, BOB = "ada@example.org", "bob@example.org"


@pytest.fixture
async def app(make_app: Any) -> Quart:
    return await make_app(ADMIN_EMAILS=f"{ADA.upper()}, root@example.org")  # type: ignore[no-any-return]


async def person(app: Quart, inbox: Inbox, address: str) -> Any:
    client = app.test_client()
    await sign_in(client, inbox, address)
    return client


async def page_text(client: Any, path: str) -> str:
    response = await client.get(path)
    assert response.status_code == 200
    return text_of(await response.get_data(as_text=True))


async def test_a_non_admin_gets_403_on_every_admin_action(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    ada = await person(app, inbox, ADA)
    bob = await person(app, inbox, BOB)
    await ada.post("/admin/bots", form={"room": "general", "name": "CI"})
    [bot_id] = redis_sync.hkeys("bots")
    before = redis_sync.xlen("admin:log")
    assert (await bob.get("/admin")).status_code == 403
    for path, form in [
        ("/admin/bans", {"email": ADA}),
        ("/admin/bans/lift", {"email": BOB}),
        ("/admin/bots", {"room": "general", "name": "Sneaky"}),
        (f"/admin/bots/{bot_id}/revoke", {}),
        ("/rooms/general/rules", {"slow": "120", "admins_only": "1"}),
    ]:
        response = await bob.post(path, form=form)
        assert response.status_code == 403, path
        assert "Only the chat's admins can do that." in await response.get_data(as_text=True)
    assert redis_sync.hkeys("bots") == [bot_id] and not redis_sync.exists("bans")
    assert redis_sync.xlen("admin:log") == before
    assert not redis_sync.exists(moderation.rules_key("general"))
    # Signed out: the sign-in page, not the admin page.
    response = await app.test_client().get("/admin")
    assert response.status_code == 302 and response.headers["Location"] == "/login"


async def test_a_ban_ends_every_session_closes_sockets_and_refuses_sign_in(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    ada = await person(app, inbox, ADA)
    bob = await person(app, inbox, BOB)
    await asyncio.sleep(1.1)  # CODE_RESEND_SECONDS
    bob_elsewhere = await person(app, inbox, BOB)
    # Bob asked for a code in a third browser before the ban; it must not work after it.
    await asyncio.sleep(1.1)
    pending = app.test_client()
    assert (await pending.post("/login", form={"email": BOB})).status_code == 200
    code = await inbox.wait_for_code(BOB, after=len(inbox.to(BOB)) - 1)
    async with bob.websocket("/rooms/general/ws") as socket:
        while 'id="online"' not in await socket.receive():
            pass
        response = await ada.post("/admin/bans", form={"email": " Bob@Example.org "})
        assert response.status_code == 303
        with pytest.raises(WebsocketDisconnectError) as closed:
            async with asyncio.timeout(2):
                while True:
                    await socket.receive()
        assert closed.value.args[0] == 1008
    for client in (bob, bob_elsewhere):
        assert (await client.get("/")).status_code == 302  # to the sign-in page
    sent = len(inbox.to(BOB))
    response = await app.test_client().post("/login", form={"email": BOB})
    assert response.status_code == 403
    assert "banned from this chat" in await response.get_data(as_text=True)
    response = await pending.post("/login/code", form={"email": BOB, "code": code})
    assert response.status_code == 403
    assert "banned from this chat" in await response.get_data(as_text=True)
    assert len(inbox.to(BOB)) == sent  # no code mailed to a banned address
    text = await page_text(ada, "/admin")
    assert BOB in text and "Unban" in text
    assert (await ada.post("/admin/bans/lift", form={"email": BOB})).status_code == 303
    assert not redis_sync.hexists("bans", BOB)
    await asyncio.sleep(1.1)
    await sign_in(app.test_client(), inbox, BOB)  # welcome back


async def test_banning_an_unknown_address_or_an_admin_is_refused(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    ada = await person(app, inbox, ADA)
    response = await ada.post("/admin/bans", form={"email": "nobody@example.org"})
    assert response.status_code == 404
    assert "No such person" in text_of(await response.get_data(as_text=True))
    response = await ada.post("/admin/bans", form={"email": "not an address"})
    assert response.status_code == 400
    for admin in (ADA, "root@example.org"):  # themselves, or another admin (signed in or not)
        response = await ada.post("/admin/bans", form={"email": admin})
        assert response.status_code == 403
        assert "Admins cannot be banned" in await response.get_data(as_text=True)
    assert not redis_sync.exists("bans") and not redis_sync.exists("admin:log")


async def test_every_admin_action_is_logged_newest_first(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    ada = await person(app, inbox, ADA)
    await person(app, inbox, BOB)
    await ada.post("/admin/bans", form={"email": BOB})
    await ada.post("/admin/bans/lift", form={"email": BOB})
    await ada.post("/rooms/general/rules", form={"slow": "30", "admins_only": "1"})
    await ada.post("/admin/bots", form={"room": "general", "name": "Builds"})
    [bot_id] = redis_sync.hkeys("bots")
    await ada.post(f"/admin/bots/{bot_id}/revoke")
    text = await page_text(ada, "/admin")
    lines = [
        "revoked the bot “Builds” of general",
        "made the bot “Builds” for general",
        "set the rules of general: slow mode 30 seconds, only admins can post",
        f"lifted the ban on {BOB}",
        f"banned {BOB}",
    ]
    positions = [text.find(line) for line in lines]
    assert -1 not in positions and positions == sorted(positions), text
    assert text.count(f"{ADA} :") == 5  # who
    entries = redis_sync.xrange("admin:log")
    assert [fields["what"] for _, fields in entries] == [
        "ban",
        "unban",
        "rules",
        "bot_created",
        "bot_revoked",
    ]
    assert all(fields["who"] == ADA for _, fields in entries)


async def test_room_rules_are_saved_and_the_form_post_obeys_them(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    ada = await person(app, inbox, ADA)
    bob = await person(app, inbox, BOB)
    room = await (await ada.get("/rooms/general")).get_data(as_text=True)
    assert 'action="/rooms/general/rules"' in room and "Slow mode" in room
    assert "Slow mode" not in await (await bob.get("/rooms/general")).get_data(as_text=True)
    for bad in ("7", "abc", ""):
        response = await ada.post("/rooms/general/rules", form={"slow": bad})
        assert response.status_code == 400
    assert (await ada.post("/rooms/nowhere/rules", form={"slow": "5"})).status_code == 404

    response = await ada.post("/rooms/general/rules", form={"slow": "30"})
    assert response.status_code == 303 and response.headers["Location"] == "/rooms/general"
    assert redis_sync.hgetall(moderation.rules_key("general")) == {"slow": "30", "admins_only": "0"}
    room = await (await ada.get("/rooms/general")).get_data(as_text=True)
    assert '<option value="30" selected>' in room
    first = await bob.post("/rooms/general/messages", form={"body": "one"})
    assert first.status_code == 303
    second = await bob.post("/rooms/general/messages", form={"body": "two"})
    assert second.status_code == 429
    assert "slow mode. You can post again in 30 seconds" in text_of(
        await second.get_data(as_text=True)
    )
    bodies = stored_bodies(redis_sync)
    assert "one" in bodies and "two" not in bodies

    await ada.post("/rooms/general/rules", form={"slow": "0", "admins_only": "1"})
    refused = await bob.post("/rooms/general/messages", form={"body": "three"})
    assert refused.status_code == 403
    assert "only admins can post in this room" in await refused.get_data(as_text=True)
    assert (await ada.post("/rooms/general/messages", form={"body": "four"})).status_code == 303
    bodies = stored_bodies(redis_sync)
    assert "three" not in bodies and "four" in bodies
