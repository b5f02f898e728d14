"""Private rooms, direct conversations, unread counts and mentions: who sees what."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from quart import Quart
from quart.testing.connections import WebsocketDisconnectError, WebsocketResponseError
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from chat import membership
from tests.conftest import text_of
from tests.support import Inbox, stored_bodies
from tests.test_live import receive_until, signed_in_client


async def person_id(client: Any, name: str) -> str:
    page = await (await client.get("/people", query_string={"q": name})).get_data(as_text=True)
    found = re.search(
        r'data-person="([0-9a-f]{16})">\s*<span[^>]*>[^<]*</span>\s*<a[^>]*>'
        + re.escape(name)
        + "<",
        page,
    )
    assert found, page
    return found.group(1)


async def make_private(client: Any, name: str) -> str:
    response = await client.post("/rooms", form={"name": name, "private": "1"})
    assert response.status_code == 303, await response.get_data(as_text=True)
    slug = response.headers["Location"].removeprefix("/rooms/")
    assert re.fullmatch(r"p-[0-9a-f]{16}", slug)
    return slug


async def test_a_private_room_is_invisible_to_non_members_on_every_path(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    cee = await signed_in_client(app, inbox, "cee@example.org")
    slug = await make_private(ada, "Secret plans")
    await send_by_form(ada, slug, "the plan is tea")
    assert "Secret plans" in text_of(await (await ada.get("/")).get_data(as_text=True))

    assert (await cee.get(f"/rooms/{slug}")).status_code == 404
    assert (await cee.get(f"/rooms/{slug}/older?before=99999999999999-0")).status_code == 404
    posted = await cee.post(f"/rooms/{slug}/messages", form={"body": "let me in"})
    assert posted.status_code == 404
    assert (
        await cee.post(f"/rooms/{slug}/invite", form={"email": "cee@example.org"})
    ).status_code == 404
    assert (await cee.post(f"/rooms/{slug}/leave")).status_code == 404
    with pytest.raises(WebsocketResponseError) as refused:
        async with cee.websocket(f"/rooms/{slug}/ws") as ws:
            await ws.receive()
    assert refused.value.response.status_code == 404
    for page in ("/", "/rooms", "/people"):
        assert "Secret plans" not in await (await cee.get(page)).get_data(as_text=True)
    # A forged id of the same shape, and one of the wrong shape, are just as unknown.
    assert (await cee.get("/rooms/p-0123456789abcdef")).status_code == 404
    assert (await cee.get("/rooms/d-0123456789abcdef/older?before=1-0")).status_code == 404
    assert stored_bodies(redis_sync, slug) == ["the plan is tea"]


async def send_by_form(client: Any, slug: str, body: str) -> None:
    response = await client.post(f"/rooms/{slug}/messages", form={"body": body})
    assert response.status_code == 303, await response.get_data(as_text=True)


async def test_an_invitation_says_the_same_for_any_address_and_lets_them_in(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    bob = await signed_in_client(app, inbox, "bob@example.org")
    slug = await make_private(ada, "Team")
    answers = []
    for address in ("bob@example.org", "dee@example.org"):
        response = await ada.post(f"/rooms/{slug}/invite", form={"email": address})
        assert response.status_code == 200
        answers.append(text_of(await response.get_data(as_text=True)).replace(address, "X"))
    assert answers[0] == answers[1] and "can open this room now" in answers[0]
    assert (await bob.get(f"/rooms/{slug}")).status_code == 200
    assert "Team" in text_of(await (await bob.get("/")).get_data(as_text=True))
    # The address nobody signed in with is not made a person: it waits for a first sign-in.
    assert redis_sync.hlen("people:by-email") == 2
    dee = await signed_in_client(app, inbox, "dee@example.org")
    assert (await dee.get(f"/rooms/{slug}")).status_code == 200


async def test_bad_invitations_get_a_clear_message_and_store_nothing(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    slug = await make_private(ada, "Team")
    members = redis_sync.smembers(f"{{r:{slug}}}:members")
    for address in ("not an address", "a@b@c", "x" * 300 + "@example.org", "\u202eada@example.org"):
        response = await ada.post(f"/rooms/{slug}/invite", form={"email": address})
        assert response.status_code == 400
        assert "valid email address" in text_of(await response.get_data(as_text=True))
    open_room = await ada.post("/rooms/general/invite", form={"email": "bob@example.org"})
    assert open_room.status_code == 400
    assert "Only private rooms take invitations" in text_of(await open_room.get_data(as_text=True))
    assert redis_sync.smembers(f"{{r:{slug}}}:members") == members
    assert not redis_sync.keys("invited:*")


async def test_a_direct_conversation_is_one_per_set_of_people(app: Quart, inbox: Inbox) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    bob = await signed_in_client(app, inbox, "bob@example.org")
    cee = await signed_in_client(app, inbox, "cee@example.org")
    bob_id, ada_id = await person_id(ada, "bob"), await person_id(ada, "ada")
    first = await ada.get(f"/direct?with={bob_id}")
    assert first.status_code == 303
    slug = first.headers["Location"].removeprefix("/rooms/")
    assert (await ada.get(f"/direct?with={bob_id}")).headers["Location"] == f"/rooms/{slug}"
    assert (await bob.get(f"/direct?with={ada_id}")).headers["Location"] == f"/rooms/{slug}"
    page = text_of(await (await bob.get(f"/rooms/{slug}")).get_data(as_text=True))
    assert "Direct messages" in page and "ada" in page  # named after the other person
    assert (await cee.get(f"/rooms/{slug}")).status_code == 404
    alone = await ada.get(f"/direct?with={ada_id}")
    assert alone.status_code == 400
    assert "at least one other person" in text_of(await alone.get_data(as_text=True))
    crowd = "&".join(f"with={n:016x}" for n in range(8))
    too_many = await ada.get(f"/direct?{crowd}")
    assert too_many.status_code == 400 and "at most 8 people" in text_of(
        await too_many.get_data(as_text=True)
    )
    for forged in ("with=nothex", "with=0123456789abcdef", "with=" + "a" * 17):
        assert (await ada.get(f"/direct?{forged}")).status_code == 404


async def test_a_direct_conversation_cut_short_by_redis_is_made_whole_by_the_next_try(
    app: Quart, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    bob = await signed_in_client(app, inbox, "bob@example.org")
    bob_id, ada_id = await person_id(ada, "bob"), await person_id(ada, "ada")
    really_add = membership._add

    async def redis_gone(*args: Any, **kwargs: Any) -> None:
        raise RedisConnectionError("Redis went away while the conversation was made")

    monkeypatch.setattr(membership, "_add", redis_gone)
    assert (await ada.get(f"/direct?with={bob_id}")).status_code == 503
    monkeypatch.setattr(membership, "_add", really_add)
    # Bob tries next: Ada is in it too, and it is titled after her for him.
    again = await bob.get(f"/direct?with={ada_id}")
    assert again.status_code == 303
    page = text_of(await (await ada.get(again.headers["Location"])).get_data(as_text=True))
    assert "Direct messages" in page and "bob" in page


async def test_unread_counts_and_mentions_reach_other_tabs_live_and_last(
    app: Quart, make_app: Any, inbox: Inbox
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    bob = await signed_in_client(app, inbox, "bob@example.org")
    for client in (ada, bob):
        await client.get("/rooms/general")
        await client.post("/rooms", form={"name": "Lunch"})
    async with bob.websocket("/rooms/lunch/ws") as b:
        await receive_until(b, 'id="sidebar"')
        await send_by_form(ada, "general", "hello all")
        await send_by_form(ada, "general", "@Bob are you there?")
        frames = await receive_until(b, "mention", timeout=5)
        line = frames[-1]
        assert 'id="badges-general"' in line and "2 unread" in line and "1 mention" in line
    home = text_of(await (await bob.get("/")).get_data(as_text=True))
    assert "2 unread" in home and "1 mention" in home
    # Kept in Redis: a new sign-in, on a restarted server, finds them as they were.
    await bob.post("/logout")
    restarted = await make_app()
    bob = await signed_in_client(restarted, inbox, "bob@example.org")
    home = text_of(await (await bob.get("/")).get_data(as_text=True))
    assert "2 unread" in home and "1 mention" in home
    room = await (await bob.get("/rooms/general")).get_data(as_text=True)
    assert 'class="mention"' in room and "data-mentions=" in room
    assert "unread" not in text_of(await (await bob.get("/")).get_data(as_text=True))


async def test_leaving_closes_the_rooms_sockets_and_forgets_it(app: Quart, inbox: Inbox) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    bob = await signed_in_client(app, inbox, "bob@example.org")
    slug = await make_private(ada, "Team")
    await ada.post(f"/rooms/{slug}/invite", form={"email": "bob@example.org"})
    async with bob.websocket(f"/rooms/{slug}/ws") as b:
        await receive_until(b, 'id="sidebar"')
        assert (await bob.post(f"/rooms/{slug}/leave")).status_code == 303
        with pytest.raises(WebsocketDisconnectError) as closed:
            async with asyncio.timeout(3):
                while True:
                    await b.receive()
        assert closed.value.args[0] == 1008
    assert (await bob.get(f"/rooms/{slug}")).status_code == 404
    assert "Team" not in text_of(await (await bob.get("/")).get_data(as_text=True))
    assert (await ada.get(f"/rooms/{slug}")).status_code == 200  # the others stay


async def test_a_mention_finds_the_longest_name_even_without_a_space(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    zhang = await signed_in_client(app, inbox, "张伟@example.org")
    await zhang.get("/rooms/general")  # people of an open room are the ones who opened it
    zhang_id = await person_id(ada, "张伟")
    await send_by_form(ada, "general", "@张伟你好，@nobody and @ADA")
    [(_, fields)] = redis_sync.xrevrange("{r:general}:stream", count=1)
    assert json.loads(fields["men"]) == [["张伟", zhang_id]]  # Ada has not opened it: no match
    page = await (await zhang.get("/rooms/general")).get_data(as_text=True)
    assert f'data-mentions="{zhang_id}"' in page
    assert re.search(r'<a class="mention" data-person="' + zhang_id + '"[^>]*>@张伟</a>你好', page)


async def test_people_are_found_in_any_script_and_cross_site_links_start_nothing(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    await signed_in_client(app, inbox, "张伟@example.org")
    everyone = text_of(await (await ada.get("/people")).get_data(as_text=True))
    assert "张伟" in everyone and "ada" in everyone
    found = await ada.get("/people", query_string={"q": "张"})
    assert "张伟" in text_of(await found.get_data(as_text=True))
    zhang = await person_id(ada, "张伟")
    lured = await ada.get(f"/direct?with={zhang}", headers={"Sec-Fetch-Site": "cross-site"})
    assert lured.status_code == 403
    assert not redis_sync.keys("{r:d-*}:meta")


async def test_a_refused_private_room_stays_private_when_corrected(
    app: Quart, inbox: Inbox
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    refused = await ada.post("/rooms", form={"name": "!!!", "private": "1"})
    assert refused.status_code == 400
    assert 'name="private" value="1" checked' in await refused.get_data(as_text=True)
