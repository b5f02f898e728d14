"""Editing, deleting and reacting to messages: who may, what is stored, what sockets get."""

from __future__ import annotations

import json
import re
from typing import Any

from quart import Quart
from redis import Redis

from tests.conftest import sign_in, text_of
from tests.support import Inbox
from tests.test_live import MESSAGE_ID, receive_until, send, signed_in_client

HX = {"HX-Request": "true"}


async def post_one(client: Any, body: str) -> str:
    """Send `body` to #general over a socket; its stream id."""
    async with client.websocket("/rooms/general/ws") as ws:
        await send(ws, body, client_id=f"cid-{abs(hash(body))}")
        frames = await receive_until(ws, body)
    return MESSAGE_ID.findall(frames[-1])[-1]


def url(message_id: str, action: str = "") -> str:
    return f"/rooms/general/messages/{message_id}" + (f"/{action}" if action else "")


def everything_stored(redis_sync: Redis) -> str:
    """Every stream entry and version of #general, as text."""
    entries = redis_sync.xrange("{r:general}:stream")
    versions = redis_sync.zrange("{r:general}:versions", 0, -1)
    return json.dumps([entries, versions], ensure_ascii=False)


async def test_edit_is_the_authors_and_reaches_sockets(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    bob = await signed_in_client(app, inbox, "bob@example.org")
    message_id = await post_one(ada, "teh plan")

    refused = await bob.post(url(message_id, "edit"), form={"body": "hijacked"}, headers=HX)
    assert refused.status_code == 403
    assert "only change your own messages" in text_of(await refused.get_data(as_text=True))
    assert (await bob.get(url(message_id) + "?do=edit", headers=HX)).status_code == 403
    for bad in ("", "   ", "x" * 4001):
        response = await ada.post(url(message_id, "edit"), form={"body": bad}, headers=HX)
        assert response.status_code == 400
        assert 'role="alert"' in await response.get_data(as_text=True)
    assert "hijacked" not in everything_stored(redis_sync)

    form = await (await ada.get(url(message_id) + "?do=edit", headers=HX)).get_data(as_text=True)
    assert 'value="teh plan"' in form and ">Save</button>" in form and ">Cancel</button>" in form
    async with bob.websocket("/rooms/general/ws") as watching:
        await receive_until(watching, 'id="online"')
        saved = await ada.post(url(message_id, "edit"), form={"body": "the plan"}, headers=HX)
        assert saved.status_code == 200
        assert "the plan" in await saved.get_data(as_text=True)
        frames = await receive_until(watching, "the plan")
    update = frames[-1]
    assert f'id="m-{message_id}"' in update and 'hx-swap-oob="outerHTML"' in update
    assert "(edited)" in update
    # The first text is gone from Redis, not only hidden.
    assert "teh plan" not in everything_stored(redis_sync)
    page = await (await bob.get("/rooms/general")).get_data(as_text=True)
    assert "the plan" in page and "teh plan" not in page and "(edited)" in page


async def test_delete_removes_the_text_and_admins_may_delete_any(
    make_app: Any, inbox: Inbox, redis_sync: Redis
) -> None:
    app = await make_app(ADMIN_EMAILS="root@example.org")
    ada = await signed_in_client(app, inbox, "ada@example.org")
    bob = await signed_in_client(app, inbox, "bob@example.org")
    root = await signed_in_client(app, inbox, "root@example.org")
    secret = await post_one(ada, "my password is hunter2")
    rude = await post_one(ada, "something rude")

    assert (await bob.post(url(secret, "delete"), headers=HX)).status_code == 403
    confirm = await (await ada.get(url(secret) + "?do=delete", headers=HX)).get_data(as_text=True)
    assert "Delete this message?" in confirm
    gone = await ada.post(url(secret, "delete"), headers=HX)
    assert gone.status_code == 200 and "Message deleted" in await gone.get_data(as_text=True)
    assert "hunter2" not in everything_stored(redis_sync)
    # Deleted twice: nothing changes, no error.
    assert (await ada.post(url(secret, "delete"), headers=HX)).status_code == 200
    assert (await ada.post(url(secret, "edit"), form={"body": "back"})).status_code == 409

    # Without JavaScript: the confirm step is a page, the delete a form post and a redirect.
    page = await root.get(url(rude) + "?do=delete")
    assert "Delete this message?" in await page.get_data(as_text=True)
    deleted = await root.post(url(rude, "delete"))
    assert deleted.status_code == 303 and deleted.headers["Location"].endswith(f"#m-{rude}")
    assert "something rude" not in everything_stored(redis_sync)
    admin_page = await (await root.get("/admin")).get_data(as_text=True)
    assert "deleted a message in general" in admin_page
    room = await (await bob.get("/rooms/general")).get_data(as_text=True)
    assert text_of(room).count("Message deleted") == 2


async def test_forged_and_malformed_ids_change_nothing(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    await post_one(ada, "stays")
    before = everything_stored(redis_sync)
    for message_id, status in (
        ("1-0", 404),
        ("99999999999999-0", 404),
        ("18446744073709551616-0", 400),
        ("abc", 400),
    ):
        for action in ("edit", "delete", "react"):
            response = await ada.post(url(message_id, action), form={"body": "x", "on": "👍"})
            assert response.status_code == status, (message_id, action)
    assert (await ada.get("/rooms/nowhere/messages/1-0?do=edit")).status_code == 404
    assert (await ada.post(url("01-0", "delete"))).status_code == 400  # one spelling per id
    assert everything_stored(redis_sync) == before


async def test_reactions_toggle_once_per_person_and_emoji(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    bob = await signed_in_client(app, inbox, "bob@example.org")
    message_id = await post_one(ada, "lunch?")
    react = url(message_id, "react")
    assert (await bob.post(react, form={"on": "👍"}, headers=HX)).status_code == 204
    assert (await bob.post(react, form={"on": "👍"}, headers=HX)).status_code == 204  # twice: one
    assert (await ada.post(react, form={"on": "👍"}, headers=HX)).status_code == 204
    page = await (await ada.get("/rooms/general")).get_data(as_text=True)
    assert 'aria-label="👍 2: bob, ada"' in page
    assert (await bob.post(react, form={"off": "👍"}, headers=HX)).status_code == 204
    page = await (await ada.get("/rooms/general")).get_data(as_text=True)
    assert 'aria-label="👍 1: ada"' in page and "bob, ada" not in page

    before = everything_stored(redis_sync)
    for form in ({"on": "💩"}, {"on": ""}, {}, {"on": "👍", "off": "👍"}, {"on": "👍👍"}):
        response = await bob.post(react, form=form, headers=HX)
        assert response.status_code == 400, form
        assert "Pick one of the reactions" in await response.get_data(as_text=True)
    assert everything_stored(redis_sync) == before
    # Without JavaScript: back to the room at the message.
    plain = await bob.post(react, form={"on": "🎉"})
    assert plain.status_code == 303 and plain.headers["Location"].endswith(f"#m-{message_id}")


async def test_reconnecting_socket_gets_current_versions_once(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    bob = await signed_in_client(app, inbox, "bob@example.org")
    first = await post_one(ada, "first")
    seen = await post_one(ada, "second")
    # Bob has seen up to "second"; then: an edit of "first", a new message edited at once, a
    # deleted new one, and a reaction.
    await ada.post(url(first, "edit"), form={"body": "first, fixed"})
    third = await post_one(ada, "third")
    await ada.post(url(third, "edit"), form={"body": "third, fixed"})
    fourth = await post_one(ada, "fourth")
    await ada.post(url(fourth, "delete"))
    await bob.post(url(seen, "react"), form={"on": "🙏"})
    async with bob.websocket(f"/rooms/general/ws?after={seen}") as ws:
        catch_up = await ws.receive()
    assert catch_up.count(f'id="m-{first}"') == 1 and "first, fixed" in catch_up
    assert catch_up.count(f'id="m-{third}"') == 1 and "third, fixed" in catch_up
    assert catch_up.count(f'id="m-{fourth}"') == 1 and "Message deleted" in catch_up
    assert catch_up.count(f'id="m-{seen}"') == 1 and "🙏 1: bob" in catch_up
    assert "fourth" not in text_of(catch_up).replace(fourth, "")
    # New ones are appended in order; changed old ones replace what the client shows.
    appended = catch_up[catch_up.index('hx-swap-oob="upsert"') :]
    assert re.findall(r"third, fixed|Message deleted", appended)[:2] == [
        "third, fixed",
        "Message deleted",
    ]
    # Caught up: nothing is sent twice.
    async with bob.websocket(
        "/rooms/general/ws?after=" + redis_sync.xrevrange("{r:general}:stream", count=1)[0][0]
    ) as ws:
        await send(ws, "live", client_id="cid-live-0001")
        frames = await receive_until(ws, "live")
    assert not any("first, fixed" in frame for frame in frames)


async def test_read_only_room_refuses_edits_and_reactions_to_non_admins(
    make_app: Any, inbox: Inbox, redis_sync: Redis
) -> None:
    app = await make_app(ADMIN_EMAILS="root@example.org")
    ada = await signed_in_client(app, inbox, "ada@example.org")
    root = await signed_in_client(app, inbox, "root@example.org")
    message_id = await post_one(ada, "before the freeze")
    saved = await root.post("/rooms/general/rules", form={"slow": "0", "admins_only": "1"})
    assert saved.status_code in (200, 303)
    assert (await ada.post(url(message_id, "edit"), form={"body": "after"})).status_code == 403
    refused = await ada.post(url(message_id, "react"), form={"on": "👍"}, headers=HX)
    assert refused.status_code == 403
    assert "only admins can post" in text_of(await refused.get_data(as_text=True))
    assert (await root.post(url(message_id, "react"), form={"on": "👍"})).status_code == 303
    # Deleting one's own message is always allowed.
    assert (await ada.post(url(message_id, "delete"))).status_code == 303


async def test_changes_share_the_send_rate(make_app: Any, inbox: Inbox) -> None:
    app = await make_app(WS_MESSAGES_PER_SECOND=1, WS_BURST=2)
    client = app.test_client()
    await sign_in(client, inbox, "ada@example.org")
    message_id = await post_one(client, "rate me")
    statuses = [
        (await client.post(url(message_id, "react"), form={"on": emoji})).status_code
        for emoji in ("👍", "❤️", "😂", "🎉")
    ]
    assert 429 in statuses


async def test_refusals_go_to_the_status_line_with_htmx_and_to_a_page_without(
    app: Quart, inbox: Inbox
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    bob = await signed_in_client(app, inbox, "bob@example.org")
    message_id = await post_one(ada, "mine")
    inline = await bob.get(url(message_id) + "?do=edit", headers=HX)
    assert inline.status_code == 403 and inline.headers["HX-Reswap"] == "none"
    html = await inline.get_data(as_text=True)
    assert 'id="compose-error"' in html and "<html" not in html  # not a page in the list
    page = await bob.get(url(message_id) + "?do=edit")
    assert page.status_code == 403 and "<html" in await page.get_data(as_text=True)
    assert (await bob.get(url(message_id) + "?do=dance")).status_code == 400
