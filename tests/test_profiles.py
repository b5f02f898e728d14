"""Display names and people's pages: what others see of a person, and never their address."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from quart import Quart
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from chat import membership, people, profiles, sessions, store
from chat.people import person_key
from tests.conftest import sign_in, text_of
from tests.support import Inbox
from tests.test_live import receive_until, send, signed_in_client

ADMIN = "root@example.org"


async def rename(client: Any, name: str, **form: str) -> Any:
    data = {"display_name": name, "locale": "en", "time_zone": "UTC", **form}
    return await client.post("/settings", form=data)


def person_of(redis_sync: Redis, address: str) -> str:
    for person in redis_sync.hvals("people:by-email"):
        if redis_sync.hget(person_key(person, "profile"), "email") == address:
            return str(person)
    raise AssertionError(address)


async def page_text(client: Any, path: str, status: int = 200) -> str:
    response = await client.get(path)
    page = await response.get_data(as_text=True)
    assert response.status_code == status, page
    return page


async def test_a_rename_shows_on_new_messages_and_in_the_header(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    bob = await signed_in_client(app, inbox, "bob@example.org")
    settings = await page_text(ada, "/settings")
    assert '<label for="display-name">Display name</label>' in settings
    assert 'name="display_name"' in settings and 'value="ada"' in settings

    async with bob.websocket("/rooms/general/ws") as watcher:
        await receive_until(watcher, 'id="online"')
        await ada.post("/rooms/general/messages", form={"body": "before the rename"})
        before = "".join(await receive_until(watcher, "before the rename"))
        saved = await rename(ada, "  Ada   Lovelace ")
        assert saved.status_code == 303
        assert (
            redis_sync.hget(person_key(person_of(redis_sync, "ada@example.org"), "profile"), "name")
            == "Ada Lovelace"
        )
        await ada.post("/rooms/general/messages", form={"body": "after the rename"})
        after = "".join(await receive_until(watcher, "after the rename"))
        # A socket opened after the rename posts under the new name too.
        async with ada.websocket("/rooms/general/ws") as socket:
            await receive_until(socket, 'id="online"')
            await send(socket, "from a new tab", client_id="client-renamed-1")
            from_socket = "".join(await receive_until(watcher, "from a new tab"))
    assert ">ada</span>" in before and "Ada Lovelace" not in before
    assert ">Ada Lovelace</span>" in after
    assert ">Ada Lovelace</span>" in from_socket
    page = await page_text(ada, "/rooms/general")
    assert "before the rename" in page and "after the rename" in page  # old ones still show
    assert 'class="me-name"' in page and ">Ada Lovelace</span>" in page
    assert 'value="Ada Lovelace"' in await page_text(ada, "/settings")


async def test_an_open_socket_posts_under_the_new_name(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    """What a socket's send check gives back: its session with the name as it is now."""
    ada = await signed_in_client(app, inbox, "ada@example.org")
    person = person_of(redis_sync, "ada@example.org")
    async with app.app_context():
        redis = store.redis()
        other = await sessions.create(redis, "ada@example.org", person, 3600, 10)
        ids = await redis.zrange(person_key(person, "sessions"), 0, -1)
        held = [await sessions.load(redis, sid, 3600, 86400) for sid in ids]
        assert other.id in ids and len(held) == 2
        assert all(s is not None and s.display_name == "ada" for s in held)
        assert (await rename(ada, "Ada Lovelace")).status_code == 303
        for session in held:
            assert session is not None
            wait, fresh = await sessions.check_send(redis, session)
            assert wait == 0 and fresh.display_name == "Ada Lovelace"
            assert fresh.id == session.id and fresh.email == session.email
        # A session made after the rename starts with the name.
        later = await sessions.create(redis, "ada@example.org", person, 3600, 10)
        assert later.display_name == "Ada Lovelace"


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("", "Give yourself a display name."),
        ("   ", "Give yourself a display name."),
        ("x" * 41, "Display names are at most 40 characters."),
        ("Ada\x07", "cannot contain control, formatting or text-direction characters"),
        ("\u202eecalevoL", "cannot contain control, formatting or text-direction characters"),
        ("Ada \u2066Lovelace\u2069", "cannot contain control"),
        ("Ada\u200bLovelace", "cannot contain control"),
    ],
)
async def test_a_bad_name_is_refused_and_nothing_changes(
    app: Quart, inbox: Inbox, redis_sync: Redis, name: str, says: str
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    profile = person_key(person_of(redis_sync, "ada@example.org"), "profile")
    before = redis_sync.hgetall(profile)
    refused = await rename(ada, name, time_zone="Asia/Shanghai", locale="zh_Hans")
    page = await refused.get_data(as_text=True)
    assert refused.status_code == 400
    assert says in text_of(html.unescape(page))
    assert 'id="display-name-error"' in page and 'aria-invalid="true"' in page
    assert redis_sync.hgetall(profile) == before  # neither the name nor the time zone
    assert "name" not in before
    assert 'value="ada"' in await page_text(ada, "/settings")


async def test_names_count_characters_in_any_script(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    profile = person_key(person_of(redis_sync, "ada@example.org"), "profile")
    for name, stored in [
        ("😀" * 40, "😀" * 40),  # 40 code points, 80 UTF-16 units
        ("e\u0301" * 40, "é" * 40),  # composed: 40 characters
        ("张伟", "张伟"),
        ("👩\u200d💻 Ada", "👩\u200d💻 Ada"),  # a joiner that emoji need
    ]:
        assert (await rename(ada, name)).status_code == 303, name
        assert redis_sync.hget(profile, "name") == stored
    assert profiles.clean_display_name(" a\u00a0 \u3000b ") == "a b"  # spaces of any kind


async def test_the_online_list_and_notices_show_names_never_addresses(
    app: Quart, inbox: Inbox
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    bob = await signed_in_client(app, inbox, "bob.stone@corp.example")
    assert (await rename(bob, "Bob Stone")).status_code == 303
    await page_text(bob, "/rooms/general")  # as a browser does before its socket opens
    async with ada.websocket("/rooms/general/ws") as a:
        await receive_until(a, 'id="online"')
        async with bob.websocket("/rooms/general/ws") as b:
            joined = "".join(await receive_until(a, "Bob Stone joined"))
            await receive_until(b, 'id="online"')
            # Renamed while in the room: the room's Online list says so at once.
            assert (await rename(bob, "Robert Stone")).status_code == 303
            renamed = (await receive_until(a, ">Robert Stone</a>"))[-1]
        left = "".join(await receive_until(a, "Robert Stone left", timeout=15))
    assert "Bob Stone" not in renamed.split('id="online"')[1]
    for frame in (joined, renamed, left):
        assert "corp.example" not in frame and "bob.stone" not in frame
        assert "example.org" not in frame and "@" not in text_of(frame)
    online = joined.split('id="online"')[1]
    assert ">Bob Stone</a>" in online and ">ada</a>" in online
    assert re.search(r'href="/people/[0-9a-f]{16}">Bob Stone</a>', online)
    page = await page_text(ada, "/rooms/general")
    assert "corp.example" not in page.split('id="online"')[1].split("</ul>")[0]


async def test_mentions_find_people_by_display_name(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    bob = await signed_in_client(app, inbox, "bob@example.org")
    cee = await signed_in_client(app, inbox, "cee@example.org")
    for client in (ada, bob, cee):
        await page_text(client, "/rooms/general")
    assert (await rename(ada, "Ada Lovelace")).status_code == 303
    ada_id = person_of(redis_sync, "ada@example.org")
    cee_id = person_of(redis_sync, "cee@example.org")
    for body in ("@Ada Lovelace, look", "@ada only the old name", "@cee, who never chose one"):
        await bob.post("/rooms/general/messages", form={"body": body})
    page = await page_text(bob, "/rooms/general")
    assert f'data-person="{ada_id}" href="/people/{ada_id}">@Ada Lovelace</a>, look' in page
    assert "@ada only the old name" in page  # the old name names nobody now
    assert f'data-person="{cee_id}" href="/people/{cee_id}">@cee</a>, who' in page


async def test_a_rename_cut_short_by_redis_is_done_whole_by_the_next_try(
    app: Quart, inbox: Inbox, redis_sync: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    bob = await signed_in_client(app, inbox, "bob@example.org")
    for client in (ada, bob):
        await page_text(client, "/rooms/general")
    really_rename = membership.rename

    async def redis_gone(*args: Any) -> list[str]:
        raise RedisConnectionError("Redis went away mid-rename")

    monkeypatch.setattr(membership, "rename", redis_gone)
    assert (await rename(ada, "Ada Lovelace")).status_code == 503
    monkeypatch.setattr(membership, "rename", really_rename)
    assert (await rename(ada, "Ada Lovelace")).status_code == 303
    assert "Ada Lovelace" in text_of(await page_text(bob, "/people?q=ada%20l"))
    await bob.post("/rooms/general/messages", form={"body": "@Ada Lovelace, found you"})
    ada_id = person_of(redis_sync, "ada@example.org")
    page = await page_text(bob, "/rooms/general")
    assert f'data-person="{ada_id}" href="/people/{ada_id}">@Ada Lovelace</a>, found' in page


async def test_people_are_listed_and_found_by_display_name(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    bob = await signed_in_client(app, inbox, "bob@example.org")
    assert (await rename(ada, "Zoë Quill")).status_code == 303
    everyone = await page_text(bob, "/people")
    assert "Zoë Quill" in text_of(everyone) and "ada@" not in everyone
    assert "Zoë Quill" in text_of(await page_text(bob, "/people?q=zo%C3%AB"))
    assert "Zoë Quill" in text_of(await page_text(bob, "/people?q=ZO%C3%8B%20q"))
    assert "Zoë Quill" not in text_of(await page_text(bob, "/people?q=ada"))
    # Signing in again (which lists the person) keeps them under the name they chose.
    async with app.app_context():
        await people.list_person(store.redis(), person_of(redis_sync, "ada@example.org"))
    assert "Zoë Quill" not in text_of(await page_text(bob, "/people?q=ada"))
    assert "Zoë Quill" in text_of(await page_text(bob, "/people?q=zo%C3%AB"))


async def test_a_persons_page_shows_the_address_to_admins_only(
    make_app: Any, inbox: Inbox, redis_sync: Redis
) -> None:
    app = await make_app(ADMIN_EMAILS=ADMIN)
    ada = await signed_in_client(app, inbox, "ada@example.org")
    bob = await signed_in_client(app, inbox, "bob@example.org")
    root = await signed_in_client(app, inbox, ADMIN)
    assert (await rename(ada, "Ada Lovelace")).status_code == 303
    ada_id = person_of(redis_sync, "ada@example.org")

    seen_by_bob = await page_text(bob, f"/people/{ada_id}")
    assert "<h1>Ada Lovelace</h1>" in seen_by_bob
    assert re.search(r'class="avatar large hue-\d"[^>]*>AL</span>', seen_by_bob)
    assert f'href="/direct?with={ada_id}">Message Ada Lovelace</a>' in seen_by_bob
    assert "ada@" not in seen_by_bob and "root@" not in seen_by_bob
    listing = await page_text(bob, "/people")
    assert "ada@" not in listing and "root@" not in listing and "Ada Lovelace" in listing

    seen_by_root = await page_text(root, f"/people/{ada_id}")
    assert "ada@example.org" in seen_by_root and "Message Ada Lovelace" in seen_by_root
    assert "ada@example.org" in await page_text(root, "/people")

    own = await page_text(ada, f"/people/{ada_id}")
    assert "<h1>Ada Lovelace</h1>" in own and "/direct?with=" not in own
    assert "ada@example.org" not in own.split("</header>", 1)[1]  # not even their own, there

    started = await bob.get(f"/direct?with={ada_id}")
    assert started.status_code == 303
    conversation = await page_text(bob, started.headers["Location"])
    assert "Ada Lovelace" in text_of(conversation)


@pytest.mark.parametrize(
    "path",
    [
        "/people/xyz",
        "/people/0123456789ABCDEF",
        "/people/0123456789abcdef",
        "/people/0123456789abcdef0",
    ],
)
async def test_no_such_person_is_a_clear_404(app: Quart, inbox: Inbox, path: str) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    page = await page_text(ada, path, status=404)
    assert "Nobody with that id has signed in here." in text_of(page)


async def test_renames_are_a_few_an_hour(app: Any, inbox: Any, redis_sync: Any) -> None:
    client = app.test_client()
    await sign_in(client, inbox, "renamer@example.org")
    statuses = []
    for n in range(12):
        response = await client.post(
            "/settings", form={"display_name": f"Name {n}", "time_zone": "UTC", "locale": ""}
        )
        statuses.append(response.status_code)
    assert statuses[:10] == [303] * 10 and statuses[10:] == [429, 429]
    page = await client.get("/settings")
    assert 'value="Name 9"' in await page.get_data(as_text=True)  # the refused one changed nothing


async def test_a_rename_retitles_the_direct_conversations_of_the_others(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    bob = await signed_in_client(app, inbox, "bob@example.org")
    opened = await ada.get(f"/direct?with={person_of(redis_sync, 'bob@example.org')}")
    slug = opened.headers["Location"].removeprefix("/rooms/")
    assert ">ada<" in await page_text(bob, f"/rooms/{slug}")
    assert (await rename(ada, "Ada Lovelace")).status_code == 303
    page = await page_text(bob, f"/rooms/{slug}")
    assert "Ada Lovelace" in page and ">ada<" not in page
