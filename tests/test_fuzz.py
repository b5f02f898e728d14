"""Property tests: arbitrary input to sign-in and to the websocket never breaks anything."""

from __future__ import annotations

import asyncio
import json
import unicodedata
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quart import Quart
from quart.testing.connections import WebsocketDisconnectError
from redis import Redis

from chat import user_agents
from chat.text import clean_body, clean_line
from tests.conftest import sign_in
from tests.support import Inbox, stored_bodies

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
# Any code point, lone surrogates included: JSON carries them ("\ud800"), no encoder takes them.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=200)
# What a form or a URL can carry: any code point UTF-8 can encode (controls and bidi included).
form_text = st.text(st.characters(codec="utf-8", exclude_categories=()), max_size=200)
deep_nesting = st.integers(min_value=100, max_value=30000).flatmap(
    lambda depth: st.sampled_from(["[" * depth, '{"a":' * depth, '{"body":' + "[" * depth])
)
message_objects = st.fixed_dictionaries(
    {},
    optional={
        "body": st.one_of(st.text(max_size=4100), any_text, json_values),
        "client_id": st.one_of(st.text(max_size=70), json_values),
        "headers": json_values,
        # The typing signal: "1", "0", or anything else.
        "typing": st.one_of(st.sampled_from(["0", "1"]), json_values),
    },
)
frames = st.one_of(
    st.text(max_size=200),
    deep_nesting,
    # Not b"": Quart's test client cannot carry an empty binary frame (KeyError in quart.asgi).
    st.binary(min_size=1, max_size=200),
    message_objects.map(json.dumps),
    json_values.map(json.dumps),
)


@FUZZ
@given(
    email=st.text(max_size=300),
    extra=st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=3),
)
async def test_send_code_never_fails_badly(
    app: Quart, inbox: Inbox, email: str, extra: dict[str, str]
) -> None:
    client = app.test_client()
    sent_before = len(inbox.messages)
    response = await client.post("/login", form={**extra, "email": email})
    assert response.status_code in (200, 400, 429)
    if response.status_code != 200:
        assert len(inbox.messages) == sent_before  # refused: nothing mailed


@FUZZ
@given(email=st.text(max_size=100), code=st.text(max_size=20))
async def test_check_code_never_fails_badly(app: Quart, email: str, code: str) -> None:
    client = app.test_client()
    response = await client.post("/login/code", form={"email": email, "code": code})
    assert response.status_code == 400  # never a 500, and never signed in by a guess
    assert (await client.get("/")).status_code == 302


@pytest.fixture
async def fuzz_room(make_app: Any, inbox: Inbox) -> tuple[Quart, Any]:
    app = await make_app(
        WS_MESSAGES_PER_SECOND=100000,
        WS_BURST=100000,
        WS_MAX_SOCKETS_PER_SESSION=1000,
        WS_HANDSHAKES_PER_MINUTE=100000,
    )
    client = app.test_client()
    await sign_in(client, inbox, "fuzz@example.org")
    return app, client


def acceptable(data: Any) -> str | None:
    """The body the server should store for this decoded frame, or None."""
    if not isinstance(data, dict) or "typing" in data:  # a typing frame posts nothing
        return None
    body, client_id = data.get("body"), data.get("client_id")
    if not isinstance(body, str) or not isinstance(client_id, str):
        return None
    cleaned = clean_body(body)
    return cleaned if cleaned and len(cleaned) <= 4000 else None


@FUZZ
@given(frame=frames)
async def test_socket_survives_any_frame(
    fuzz_room: tuple[Quart, Any], redis_sync: Redis, frame: str | bytes
) -> None:
    _app, client = fuzz_room
    before = len(stored_bodies(redis_sync))
    async with client.websocket("/rooms/general/ws") as ws:
        async with asyncio.timeout(5):
            while 'id="online"' not in await ws.receive():
                pass
        await ws.send(frame)
        # Then a valid message: either it is answered (the socket lived) or the socket was closed.
        probe_id = f"probe-{uuid.uuid4().hex}"
        await ws.send(json.dumps({"body": "probe", "client_id": probe_id}))
        try:
            async with asyncio.timeout(5):
                while "probe" not in await ws.receive():
                    pass
        except WebsocketDisconnectError as closed:
            assert closed.args[0] in (1003, 1008, 1009)
    stored = stored_bodies(redis_sync)
    expected = None
    if isinstance(frame, str):
        try:
            expected = acceptable(json.loads(frame))
        except (ValueError, RecursionError):
            expected = None
    new = stored[before:]
    assert all(body in (expected, "probe") for body in new), new
    assert (await client.get("/healthz")).status_code == 200


@FUZZ
@given(
    name=form_text, extra=st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=2)
)
async def test_room_names_never_fail_badly(
    fuzz_room: tuple[Quart, Any], redis_sync: Redis, name: str, extra: dict[str, str]
) -> None:
    _app, client = fuzz_room
    response = await client.post("/rooms", form={**extra, "name": name})
    assert response.status_code in (303, 400, 429)
    for stored in redis_sync.hvals("rooms"):
        assert stored == clean_line(stored) and stored  # nothing hidden, nothing empty


@FUZZ
@given(before=form_text, after=form_text, epoch=form_text)
async def test_paging_and_socket_parameters_never_fail_badly(
    fuzz_room: tuple[Quart, Any], before: str, after: str, epoch: str
) -> None:
    _app, client = fuzz_room
    older = await client.get("/rooms/general/older", query_string={"before": before})
    assert older.status_code in (200, 400)
    listing = await client.get("/rooms", query_string={"after": after})
    assert listing.status_code in (200, 400)
    async with client.websocket(
        "/rooms/general/ws", query_string={"after": after, "epoch": epoch}
    ) as ws:
        async with asyncio.timeout(5):
            while 'id="online"' not in await ws.receive():
                pass


@FUZZ
@given(
    accept=st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=100),
    cookie=st.text(st.characters(codec="ascii", exclude_characters=";\r\n"), max_size=40),
    locale=form_text,
    zone=form_text,
    target=form_text,
)
async def test_language_and_time_zone_inputs_never_fail_badly(
    fuzz_room: tuple[Quart, Any], accept: str, cookie: str, locale: str, zone: str, target: str
) -> None:
    _app, client = fuzz_room
    client.set_cookie("localhost", "chat_locale", cookie)
    page = await client.get("/", headers={"Accept-Language": accept})
    assert page.status_code == 200
    saved = await client.post("/settings", form={"locale": locale, "time_zone": zone})
    assert saved.status_code in (303, 400)
    moved = await client.post("/language", form={"locale": locale, "next": target})
    assert moved.status_code == 303 and moved.headers["Location"].startswith("/")
    assert not moved.headers["Location"].startswith(("//", "/\\"))


@FUZZ
@given(
    email=form_text,
    people=st.lists(st.one_of(form_text, st.from_regex(r"\A[0-9a-f]{16}\Z")), max_size=20),
    query=form_text,
    after=form_text,
    slug=st.one_of(form_text.filter(bool), st.from_regex(r"\A[pd]-[0-9a-f]{16}\Z")),
)
async def test_conversation_inputs_never_fail_badly(
    fuzz_room: tuple[Quart, Any],
    redis_sync: Redis,
    email: str,
    people: list[str],
    query: str,
    after: str,
    slug: str,
) -> None:
    _app, client = fuzz_room
    made = await client.post("/rooms", form={"name": "fuzz team", "private": "1"})
    assert made.status_code in (303, 429)
    private = made.headers.get("Location", "/rooms/general").removeprefix("/rooms/")
    invited = await client.post(f"/rooms/{private}/invite", form={"email": email})
    assert invited.status_code in (200, 400, 404, 429)
    for key in redis_sync.keys("invited:*"):  # only well-formed addresses wait for a sign-in
        assert redis_sync.type(key) == "set"
    direct = await client.get("/direct", query_string=[("with", p) for p in people])
    assert direct.status_code in (303, 400, 404, 429)
    listing = await client.get("/people", query_string={"q": query, "after": after})
    assert listing.status_code in (200, 400)
    room = quote(slug, safe="")  # as a browser sends it
    # 308: a slug of "/" makes "//", which the router redirects to the single-slash path.
    assert (await client.get(f"/rooms/{room}")).status_code in (200, 404, 308)
    older = await client.get(f"/rooms/{room}/older", query_string={"before": "1-0"})
    assert older.status_code in (200, 404, 308)
    assert (await client.post(f"/rooms/{room}/leave")).status_code in (303, 404)


@FUZZ
@given(
    message_id=st.one_of(form_text, st.from_regex(r"\A[0-9]{1,21}-[0-9]{1,21}\Z")),
    body=form_text,
    emoji=st.one_of(form_text, st.sampled_from(["👍", "❤️", "😂", "🎉", "😮", "🙏"])),
    key=st.sampled_from(["on", "off", "emoji"]),
    action=st.sampled_from(["edit", "delete", "react"]),
)
async def test_message_change_inputs_never_fail_badly(
    fuzz_room: tuple[Quart, Any],
    redis_sync: Redis,
    message_id: str,
    body: str,
    emoji: str,
    key: str,
    action: str,
) -> None:
    _app, client = fuzz_room
    path = f"/rooms/general/messages/{quote(message_id, safe='')}/{action}"
    form = {"body": body, key: emoji}
    for headers in ({}, {"HX-Request": "true"}):
        shown = await client.get(path, headers=headers)
        assert shown.status_code in (200, 308, 400, 403, 404, 405, 409), shown.status_code
        changed = await client.post(path, form=form, headers=headers)
        assert changed.status_code in (200, 204, 303, 308, 400, 403, 404, 405, 409, 429)
    for member in redis_sync.zrange("{r:general}:versions", 0, -1):
        json.loads(member.partition("\x1f")[2])  # whatever was stored is whole


@pytest.fixture
async def searched_room(fuzz_room: tuple[Quart, Any]) -> tuple[Quart, Any]:
    """The fuzz room with a few archived messages, so queries run against real rows."""
    app, client = fuzz_room
    for body in ("The café opens at nine", "我们明天在图书馆见面", "ok"):
        await client.post("/rooms/general/messages", form={"body": body})
    return app, client


@FUZZ
@given(
    query=st.one_of(
        form_text,
        st.text(st.sampled_from("\"*^-+():NEARORANDNOT in from #@\\%_'a你"), max_size=60),
        st.text(max_size=1000),
    ),
    before=st.one_of(form_text, st.from_regex(r"\A[0-9]{1,25}\Z")),
    at=st.one_of(form_text, st.from_regex(r"\A[0-9]{1,21}-[0-9]{1,21}\Z")),
    fmt=st.one_of(form_text, st.sampled_from(["jsonl", "txt"])),
)
async def test_search_context_and_export_inputs_never_fail_badly(
    searched_room: tuple[Quart, Any], query: str, before: str, at: str, fmt: str
) -> None:
    _app, client = searched_room
    found = await client.get("/search", query_string={"q": query})
    assert found.status_code in (200, 400), found.status_code
    text = (await found.get_data(as_text=True)).lower()
    assert "traceback" not in text and "sqlite" not in text and "fts5" not in text
    paged = await client.get("/search", query_string={"q": "cafe", "before": before})
    assert paged.status_code in (200, 400)
    opened = await client.get("/rooms/general", query_string={"at": at})
    assert opened.status_code in (200, 400, 404)
    exported = await client.get(f"/rooms/general/export.{quote(fmt, safe='')}")
    assert exported.status_code in (200, 404, 308, 429)


@FUZZ
@given(
    handle=st.one_of(form_text, st.from_regex(r"\A[0-9a-f]{24}\Z")),
    code=st.one_of(form_text, st.from_regex(r"\A[0-9]{8}\Z")),
    ended=form_text,
)
async def test_session_and_leaving_inputs_never_fail_badly(
    fuzz_room: tuple[Quart, Any], redis_sync: Redis, handle: str, code: str, ended: str
) -> None:
    _app, client = fuzz_room
    sessions_before = sorted(redis_sync.keys("session:*"))
    ending = await client.post("/settings/sessions/end", form={"session": handle})
    assert ending.status_code == 404  # no other session of theirs exists
    confirming = await client.post("/settings/delete/confirm", form={"code": code})
    assert confirming.status_code in (400, 429)  # no code was asked for: nothing to match
    page = await client.get("/settings", query_string={"ended": ended})
    assert page.status_code == 200  # still signed in: nothing was deleted or ended
    assert sorted(redis_sync.keys("session:*")) == sessions_before


@FUZZ
@given(agent=st.one_of(any_text, st.text(max_size=20_000)))
async def test_any_user_agent_is_kept_short_printable_and_named(agent: str) -> None:
    kept = user_agents.clean(agent)
    assert len(kept) <= user_agents.MAX_CHARS
    assert all(char == " " or unicodedata.category(char)[0] not in "CZ" for char in kept)
    browser, system = await user_agents.describe(agent)
    assert isinstance(browser, str) and isinstance(system, str)
