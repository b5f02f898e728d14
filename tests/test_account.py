"""A person's control of their account: where they are signed in, the sign-in notice email,
and deleting the account (blueprints/account.py, chat/signed_in.py, chat/leaving.py)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from quart.testing.connections import WebsocketDisconnectError
from redis import Redis

from tests.conftest import text_of
from tests.support import Inbox
from tests.test_archive import archived, wait_archived
from tests.test_changes import HX, url
from tests.test_conversations import make_private
from tests.test_live import MESSAGE_ID, receive_until, send

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
HANDLE = re.compile(r'name="session" value="([0-9a-f]{24})"')
NOTICE = "New sign-in to Chat"


@pytest.fixture
async def app(make_app: Any) -> Quart:
    return await make_app(PROXY_HOPS=1)  # so each browser can come from its own address  # type: ignore[no-any-return]


async def browser(
    app: Quart, inbox: Inbox, address: str, agent: str, ip: str = "198.51.100.7"
) -> Any:
    """A test client that signs in as a browser would, with its User-Agent, from `ip`."""
    client = app.test_client()
    headers = {"User-Agent": agent, "X-Forwarded-For": ip}
    before = len(inbox.to(address))
    asked = await client.post("/login", form={"email": address}, headers=headers)
    assert asked.status_code == 200, await asked.get_data(as_text=True)
    code = await inbox.wait_for_code(address, after=before)
    done = await client.post("/login/code", form={"email": address, "code": code}, headers=headers)
    assert done.status_code == 303
    return client


async def settings_page(client: Any) -> str:
    response = await client.get("/settings")
    assert response.status_code == 200
    return str(await response.get_data(as_text=True))


async def test_each_sign_in_is_listed_with_its_browser_and_this_one_marked(
    app: Quart, inbox: Inbox
) -> None:
    laptop = await browser(app, inbox, "ada@example.org", FIREFOX)
    await asyncio.sleep(1.1)  # CODE_RESEND_SECONDS
    await browser(app, inbox, "ada@example.org", IPHONE)
    page = await settings_page(laptop)
    section = text_of(page.split('id="signed-in"')[1].split("</section>")[0])
    assert "Where you're signed in" in text_of(page)
    assert "Firefox 133 on Windows 10" in section and "Mobile Safari 17 on iOS 17" in section
    assert section.index("Firefox") < section.index("This browser") < section.index("Safari")
    assert section.count("This browser") == 1 and "IP address 198.51.100.7" in section
    assert len(HANDLE.findall(page)) == 1  # a button for the other one only
    assert "Sign out everywhere else" in section
    assert "session:" not in page  # no session id, only handles


async def test_ending_another_session_closes_its_sockets_at_once(app: Quart, inbox: Inbox) -> None:
    laptop = await browser(app, inbox, "ada@example.org", FIREFOX)
    await asyncio.sleep(1.1)
    phone = await browser(app, inbox, "ada@example.org", IPHONE)
    async with phone.websocket("/rooms/general/ws") as socket:
        await receive_until(socket, 'id="online"')
        (handle,) = HANDLE.findall(await settings_page(laptop))
        ended = await laptop.post("/settings/sessions/end", form={"session": handle})
        assert ended.status_code == 303
        frames = []
        with pytest.raises(WebsocketDisconnectError) as closed:
            async with asyncio.timeout(3):
                while True:
                    frames.append(await socket.receive())
        assert closed.value.args[0] == 1008 and "signed out" in text_of("".join(frames))
    gone = await phone.get("/rooms/general")
    assert gone.status_code == 302 and gone.headers["Location"].startswith("/login")
    assert ended.headers["Location"] == "/settings?ended=1#signed-in"
    page = await (await laptop.get("/settings?ended=1")).get_data(as_text=True)
    assert "1 sign-in ended." in text_of(page) and "Safari" not in page


async def test_sign_out_everywhere_else_keeps_this_browser(app: Quart, inbox: Inbox) -> None:
    clients = []
    for agent in (FIREFOX, IPHONE, "curl/8.5.0"):
        clients.append(await browser(app, inbox, "ada@example.org", agent))
        await asyncio.sleep(1.1)
    here = clients[0]
    ended = await here.post("/settings/sessions/end-others")
    assert ended.status_code == 303 and ended.headers["Location"] == "/settings?ended=2#signed-in"
    page = await (await here.get("/settings?ended=2")).get_data(as_text=True)
    assert "2 sign-ins ended." in text_of(page) and "Sign out everywhere else" not in page
    for other in clients[1:]:
        assert (await other.get("/settings")).status_code == 302


async def test_forged_foreign_or_own_handles_end_nothing(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    ada = await browser(app, inbox, "ada@example.org", FIREFOX)
    bob = await browser(app, inbox, "bob@example.org", IPHONE)
    await asyncio.sleep(1.1)
    await browser(app, inbox, "bob@example.org", FIREFOX)
    (bobs_other,) = HANDLE.findall(await settings_page(bob))
    before = sorted(redis_sync.keys("session:*"))
    for forged in (bobs_other, "0" * 24, "", "x" * 5000, "ABCDEF" * 4, "../" * 8, "١٢٣"):
        refused = await ada.post("/settings/sessions/end", form={"session": forged})
        assert refused.status_code == 404, forged
        assert "already ended, or it is not one of yours" in text_of(
            await refused.get_data(as_text=True)
        )
    assert sorted(redis_sync.keys("session:*")) == before


async def test_a_hostile_user_agent_is_stored_short_and_clean(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    hostile = "Mozilla/5.0 \u202eevil\u202c \x07\x1b[31m" + "A" * 10_000
    client = await browser(app, inbox, "ada@example.org", hostile)
    (key,) = redis_sync.keys("session:*")
    stored = redis_sync.hget(key, "ua")
    assert stored is not None and len(stored) <= 300
    assert not any(c in stored for c in "\u202e\u202c\x07\x1b")
    page = await settings_page(client)
    assert "\u202e" not in page and "Where you're signed in" in text_of(page)


async def test_the_notice_email_comes_from_the_second_sign_in_and_can_be_turned_off(
    app: Quart, inbox: Inbox
) -> None:
    first = await browser(app, inbox, "ada@example.org", FIREFOX)
    await asyncio.sleep(1.5)  # the notice is a background task: give it time to not come
    assert inbox.notices_to("ada@example.org") == []
    await browser(app, inbox, "ada@example.org", IPHONE, ip="203.0.113.9")
    async with asyncio.timeout(5):
        while not inbox.notices_to("ada@example.org"):
            await asyncio.sleep(0.05)
    (notice,) = inbox.notices_to("ada@example.org")
    assert str(notice["Subject"]) == NOTICE
    text = notice.get_body(preferencelist=("plain",)).get_content()
    assert "Mobile Safari 17 on iOS 17" in text and "203.0.113.9" in text
    assert "http://localhost/settings" in text and "Sign out" in text
    page = await settings_page(first)
    assert 'name="signin_mail" value="1" checked' in page
    form = {"display_name": "ada", "time_zone": "UTC", "mention_mail": "0", "signin_mail": "0"}
    assert (await first.post("/settings", form=form)).status_code == 303
    await asyncio.sleep(1.1)
    await browser(app, inbox, "ada@example.org", "curl/8.5.0")
    await asyncio.sleep(1.5)
    assert len(inbox.notices_to("ada@example.org")) == 1


async def test_the_notice_speaks_the_persons_language(app: Quart, inbox: Inbox) -> None:
    ada = await browser(app, inbox, "ada@example.org", FIREFOX)
    form = {"display_name": "ada", "time_zone": "Asia/Shanghai", "locale": "zh_Hans"}
    assert (await ada.post("/settings", form=form)).status_code == 303
    await asyncio.sleep(1.1)
    await browser(app, inbox, "ada@example.org", IPHONE)
    async with asyncio.timeout(5):
        while not inbox.notices_to("ada@example.org"):
            await asyncio.sleep(0.05)
    (notice,) = inbox.notices_to("ada@example.org")
    assert NOTICE not in str(notice["Subject"]) and "登录" in str(notice["Subject"])


async def delete_code(inbox: Inbox, address: str, after: int) -> str:
    async with asyncio.timeout(10):
        while len(inbox.to(address)) <= after:
            await asyncio.sleep(0.02)
    subject = str(inbox.to(address)[after]["Subject"])
    assert "delete your account" in subject
    return subject.split()[0]


async def post_in(client: Any, slug: str, body: str) -> str:
    async with client.websocket(f"/rooms/{slug}/ws") as ws:
        await send(ws, body, client_id=f"cid-{abs(hash(body)):012d}")
        frames = await receive_until(ws, body)
    return MESSAGE_ID.findall(frames[-1])[-1]


def keys_naming(redis_sync: Redis, person: str) -> list[str]:
    """Keys whose name or value holds the person id anywhere (in a member, a field, a JSON
    value), but the streams and message versions, which keep who wrote what."""
    found = []
    for key in redis_sync.scan_iter(count=1000):
        kind = redis_sync.type(key)
        if person in key:
            values: list[str] = [person]
        elif kind == "string":
            values = [redis_sync.get(key) or ""]
        elif kind == "set":
            values = list(redis_sync.smembers(key))
        elif kind == "zset" and not key.endswith(":versions"):
            values = redis_sync.zrange(key, 0, -1)
        elif kind == "hash":
            values = [*redis_sync.hkeys(key), *redis_sync.hvals(key)]
        elif kind == "list":
            values = redis_sync.lrange(key, 0, -1)
        else:
            continue
        if any(person in value for value in values):
            found.append(key)
    return found


async def test_deleting_an_account_needs_a_fresh_code_and_erases_the_person(
    app: Quart, inbox: Inbox, redis_sync: Redis, own_archive: Path
) -> None:
    ada = await browser(app, inbox, "ada@example.org", FIREFOX)
    bob = await browser(app, inbox, "bob@example.org", IPHONE)
    ada_person = next(
        redis_sync.hget(k, "person")
        for k in redis_sync.keys("session:*")
        if redis_sync.hget(k, "email") == "ada@example.org"
    )
    mine = [await post_in(ada, "general", f"ada says {n}") for n in range(3)]
    bobs = await post_in(bob, "general", "bob says hello")
    assert (await ada.post(url(bobs, "react"), form={"on": "👍"}, headers=HX)).status_code == 204
    bob_person = next(
        redis_sync.hget(k, "person")
        for k in redis_sync.keys("session:*")
        if redis_sync.hget(k, "email") == "bob@example.org"
    )
    direct = (await ada.get(f"/direct?with={bob_person}")).headers["Location"].split("/")[-1]
    await post_in(ada, direct, "ada to bob alone")
    team = await make_private(ada, "Team")
    await ada.post(f"/rooms/{team}/invite", form={"email": "bob@example.org"})
    in_team = await post_in(ada, team, "ada in the team")
    await wait_archived(own_archive, 4)

    # A wrong code, and a sign-in code, change nothing.
    sent = len(inbox.to("ada@example.org"))
    asked = await ada.post("/settings/delete")
    assert asked.status_code == 200 and "We sent a code to" in text_of(
        await asked.get_data(as_text=True)
    )
    code = await delete_code(inbox, "ada@example.org", sent)
    wrong = "00000000" if code != "00000000" else "11111111"
    refused = await ada.post("/settings/delete/confirm", form={"code": wrong})
    assert refused.status_code == 400 and "That code is not right" in text_of(
        await refused.get_data(as_text=True)
    )
    await asyncio.sleep(1.1)  # a deletion code and a sign-in code share the sending limits
    other = app.test_client()
    await other.post("/login", form={"email": "ada@example.org"})
    signin_code = await inbox.wait_for_code("ada@example.org", after=sent + 1)
    stale = await ada.post("/settings/delete/confirm", form={"code": signin_code})
    assert stale.status_code == 400
    assert (await ada.get("/settings")).status_code == 200
    assert redis_sync.exists(f"{{p:{ada_person}}}:profile")

    # The right code: the person is gone, with their words.
    done = await ada.post("/settings/delete/confirm", form={"code": code})
    assert done.status_code == 303 and done.headers["Location"] == "/login?left=1"
    assert "Your account was deleted" in text_of(
        await (await ada.get("/login?left=1")).get_data(as_text=True)
    )
    assert (await ada.get("/settings")).status_code == 302
    async with asyncio.timeout(15):
        while redis_sync.zcard("leaving:pending"):
            await asyncio.sleep(0.05)
    assert keys_naming(redis_sync, ada_person) == []
    general = await (await bob.get("/rooms/general")).get_data(as_text=True)
    assert "ada says" not in general and "bob says hello" in general
    with_ada = await (await bob.get(f"/rooms/{direct}")).get_data(as_text=True)
    assert "ada to bob alone" not in with_ada and "Message deleted" in with_ada
    for message_id in mine:
        assert f'id="m-{message_id}"' in general
    assert general.count("Message deleted") >= 3
    assert "👍 1" not in general
    stored = json.dumps(
        [
            redis_sync.zrange("{r:general}:versions", 0, -1),
            redis_sync.zrange(f"{{r:{team}}}:versions", 0, -1),
        ],
        ensure_ascii=False,
    )
    assert "ada says" not in stored and "ada in the team" not in stored and ada_person not in stored
    async with asyncio.timeout(10):
        while any(
            "ada" in state for _, state in archived(own_archive) + archived(own_archive, team)
        ):
            await asyncio.sleep(0.05)
    assert in_team in [i for i, _ in archived(own_archive, team)]
    # Nothing stored names the address: not the streams, not the archive's rows.
    assert "ada@example.org" not in json.dumps(redis_sync.xrange("{r:general}:stream"))
    for file in own_archive.parent.glob(own_archive.name + "*"):  # the WAL too
        assert b"ada@example.org" not in file.read_bytes()

    # The address can sign up again, as someone new.
    await asyncio.sleep(1.1)
    again = await browser(app, inbox, "ada@example.org", FIREFOX)
    new_person = next(
        redis_sync.hget(k, "person")
        for k in redis_sync.keys("session:*")
        if redis_sync.hget(k, "email") == "ada@example.org"
    )
    assert new_person != ada_person
    assert "Team" not in text_of(await (await again.get("/")).get_data(as_text=True))


async def test_a_deletion_cut_short_is_finished_by_the_job(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    """The request queued the job and died: the job does everything the request would have."""
    ada = await browser(app, inbox, "ada@example.org", FIREFOX)
    bob = await browser(app, inbox, "bob@example.org", IPHONE)
    await post_in(ada, "general", "ada was here")
    (key,) = [
        k for k in redis_sync.keys("session:*") if redis_sync.hget(k, "email") == "ada@example.org"
    ]
    person = redis_sync.hget(key, "person")
    assert person
    redis_sync.hset("leaving:emails", person, "ada@example.org")
    redis_sync.zadd("leaving:pending", {person: 0})
    async with asyncio.timeout(15):
        while redis_sync.zcard("leaving:pending"):
            await asyncio.sleep(0.05)
    assert keys_naming(redis_sync, person) == []
    general = await (await bob.get("/rooms/general")).get_data(as_text=True)
    assert "ada was here" not in general and "Message deleted" in general
