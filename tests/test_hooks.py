"""Bots: `POST /hooks/<token>` from a curl-like client (httpx), the hashed token, revocation,
bad input and the rate limit."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from quart import Quart
from redis import Redis

from chat import bots, store
from tests.conftest import SECRET, sign_in, sync_client, text_of
from tests.servers import AppServer
from tests.support import GENEROUS_LIMITS, Inbox, SmtpServer, stored_messages

ADA = "ada@example.org"
HOOK_URL = re.compile(r'value="(http://localhost/hooks/([A-Za-z0-9_-]{43}))"')
NOT_FOUND = b"not found\n"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
async def app(make_app: Any) -> Quart:
    return await make_app(ADMIN_EMAILS=ADA, WS_MESSAGES_PER_SECOND=1, WS_BURST=3)  # type: ignore[no-any-return]


@pytest.fixture
async def ada(app: Quart, inbox: Inbox) -> Any:
    client = app.test_client()
    await sign_in(client, inbox, ADA)
    return client


@pytest.fixture
async def http(app: Quart) -> AsyncIterator[httpx.AsyncClient]:
    """A machine's client: no cookie, no Origin, the app over ASGI (the app is serving)."""
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        yield client


async def make_bot(ada: Any, name: str = "CI", room: str = "general") -> tuple[str, str]:
    """(the path of the bot's URL, its token), as the admin page shows them once."""
    response = await ada.post("/admin/bots", form={"room": room, "name": name})
    assert response.status_code == 201
    html = await response.get_data(as_text=True)
    match = HOOK_URL.search(html)
    assert match, html
    return f"/hooks/{match.group(2)}", match.group(2)


def stored(redis: Redis, slug: str = "general") -> list[dict[str, str]]:
    return stored_messages(redis, slug)


def every_string_in(redis: Redis) -> str:
    """Every key and value in the database, as one text to search."""
    seen: list[str] = []
    for key in redis.scan_iter(count=1000):
        seen.append(key)
        kind = redis.type(key)
        if kind == "string":
            seen.append(str(redis.get(key)))
        elif kind == "hash":
            seen.extend(f"{k}={v}" for k, v in redis.hgetall(key).items())
        elif kind == "set":
            seen.extend(redis.smembers(key))
        elif kind == "zset":
            seen.extend(redis.zrange(key, 0, -1))
        elif kind == "list":
            seen.extend(redis.lrange(key, 0, -1))
        elif kind == "stream":
            seen.extend(str(fields) for _, fields in redis.xrange(key))
    return "\n".join(seen)


async def test_the_url_is_shown_once_and_the_token_stored_only_hashed(
    ada: Any, redis_sync: Redis
) -> None:
    _, token = await make_bot(ada, "Builds")
    later = await (await ada.get("/admin")).get_data(as_text=True)
    assert token not in later and "Builds in general" in text_of(later) and "Revoke" in later
    everything = every_string_in(redis_sync)
    assert token not in everything
    assert bots.token_digest(SECRET.encode(), token) in everything  # what is kept instead


async def test_form_and_json_posts_are_stored_as_the_bot(
    app: Quart, ada: Any, http: httpx.AsyncClient, redis_sync: Redis
) -> None:
    path, _ = await make_bot(ada, "Builds")
    [bot_id] = redis_sync.hkeys("bots")
    async with ada.websocket("/rooms/general/ws") as socket:
        while 'id="online"' not in await socket.receive():
            pass
        # What `curl -d 'body=build 512 passed' URL` sends: a form, no Origin, no cookie.
        response = await http.post(path, data={"body": "build 512 passed"})
        assert response.status_code == 201 and response.text.startswith("posted ")
        async with asyncio.timeout(5):
            while "build 512 passed" not in await socket.receive():
                pass
    response = await http.post(path, json={"body": "  deploy\r\ndone \u202e "})
    assert response.status_code == 201
    messages = stored(redis_sync)
    assert [m["body"] for m in messages] == ["build 512 passed", "deploy\ndone"]
    for message in messages:
        assert message["bot"] == "1" and message["name"] == "Builds"
        assert message["pid"] == bot_id and "author" not in message
    page = await (await ada.get("/rooms/general")).get_data(as_text=True)
    assert "build 512 passed" in page and "Builds" in page
    assert page.count('<span class="bot-mark">bot</span>') == 2  # the "bot" mark on each
    # A browser on another site can post too, if it knows the secret: the exemption is this
    # endpoint's alone, every other write still refuses a cross-site request.
    foreign = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    assert (await http.post(path, data={"body": "x"}, headers=foreign)).status_code == 201
    refused = await ada.post("/rooms/general/messages", form={"body": "y"}, headers=foreign)
    assert refused.status_code == 403


async def test_bad_posts_get_a_clear_4xx_and_store_nothing(
    make_app: Any, inbox: Inbox, redis_sync: Redis
) -> None:
    app = await make_app(ADMIN_EMAILS=ADA, MAX_MESSAGE_CHARS=50)
    ada = app.test_client()
    await sign_in(ada, inbox, ADA)
    path, _ = await make_bot(ada)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
        cases: list[tuple[dict[str, Any], int]] = [
            ({"content": b"body=hi", "headers": {"Content-Type": "text/plain"}}, 415),
            ({"content": b"hi"}, 415),  # no content type at all
            ({"files": {"body": ("a.txt", b"hi")}}, 415),  # multipart
            ({"data": {"body": ""}}, 400),
            ({"data": {"body": " \n\u202e\x00 "}}, 400),  # nothing left once cleaned
            ({"data": {"text": "hi"}}, 400),
            ({"json": {"body": 5}}, 400),
            ({"json": ["body", "hi"]}, 400),
            ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400),
            ({"content": b"\xff\xfe", "headers": {"Content-Type": "application/json"}}, 400),
            ({"content": b"[" * 60_000, "headers": {"Content-Type": "application/json"}}, 400),
            ({"data": {"body": "x" * 51}}, 413),
            ({"data": {"body": "x" * 70_000}}, 413),  # past the 64 KiB request limit
        ]
        for request, status in cases:
            response = await http.post(path, **request)
            assert response.status_code == status, (request, response.text)
            assert response.headers["Content-Type"].startswith("text/plain"), response.text
        assert (await http.get(path)).status_code == 405
        response = await http.post(path, content=b"body=ok\xff", headers={"Content-Type": FORM})
        assert response.status_code == 400  # not UTF-8: the form has no body field
    assert stored(redis_sync) == []


async def test_unknown_revoked_and_malformed_tokens_get_the_same_404(
    ada: Any, http: httpx.AsyncClient, redis_sync: Redis
) -> None:
    path, token = await make_bot(ada)
    [bot_id] = redis_sync.hkeys("bots")
    assert (await http.post(path, data={"body": "before"})).status_code == 201
    other = "A" * 43
    for wrong in (other, token[:-1], token + "x", "x", "%00%ff", "a.b~c", "é" * 300):
        response = await http.post(f"/hooks/{wrong}", data={"body": "hi"})
        assert (response.status_code, response.content) == (404, NOT_FOUND), wrong
    assert (await ada.post(f"/admin/bots/{bot_id}/revoke")).status_code == 303
    response = await http.post(path, data={"body": "after"})
    assert (response.status_code, response.content) == (404, NOT_FOUND)
    assert (await ada.post(f"/admin/bots/{bot_id}/revoke")).status_code == 404
    assert not redis_sync.exists("bots") and not redis_sync.exists(bots.BY_DIGEST_KEY)
    assert [m["body"] for m in stored(redis_sync)] == ["before"]


async def test_a_bot_whose_room_is_gone_gets_404(
    ada: Any, http: httpx.AsyncClient, redis_sync: Redis
) -> None:
    assert (
        await ada.post("/admin/bots", form={"room": "nowhere", "name": "CI"})
    ).status_code == 404
    assert not redis_sync.exists("bots")
    path, _ = await make_bot(ada)
    [bot_id] = redis_sync.hkeys("bots")
    record = redis_sync.hget("bots", bot_id)
    assert record is not None
    redis_sync.hset("bots", bot_id, record.replace('"general"', '"vanished"'))
    response = await http.post(path, data={"body": "hi"})
    assert (response.status_code, response.content) == (404, NOT_FOUND)
    assert stored(redis_sync, "vanished") == []


async def test_each_bot_has_the_send_rate_of_a_person(
    ada: Any, http: httpx.AsyncClient, redis_sync: Redis
) -> None:
    first, _ = await make_bot(ada, "One")
    second, _ = await make_bot(ada, "Two")
    for n in range(3):  # WS_BURST
        assert (await http.post(first, data={"body": f"m{n}"})).status_code == 201
    refused = await http.post(first, json={"body": "too fast"})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert (await http.post(second, data={"body": "other bot"})).status_code == 201
    await asyncio.sleep(1.1)  # WS_MESSAGES_PER_SECOND = 1
    assert (await http.post(first, data={"body": "later"})).status_code == 201
    assert [m["body"] for m in stored(redis_sync)] == ["m0", "m1", "m2", "other bot", "later"]


async def test_a_build_server_posts_to_the_real_server(
    redis_url: str, smtp_server: SmtpServer
) -> None:
    """The production entry (hypercorn, Host check, no cookie, no Origin), as curl would."""
    settings = {"REDIS_URL": redis_url, "SMTP_URL": smtp_server.url, "SECRET_KEY": SECRET}
    server = AppServer({**settings, "COOKIE_SECURE": False, **GENEROUS_LIMITS})
    await asyncio.to_thread(server.start)
    try:
        redis, _ = store.connect(redis_url)
        async with redis:
            token, refusal = await bots.create(
                redis, SECRET.encode(), "Builds", "general", "ops@example.org"
            )
            assert token is not None, refusal
        async with httpx.AsyncClient(base_url=server.url) as curl:
            response = await curl.post(f"/hooks/{token}", data={"body": "build 512 passed"})
            assert response.status_code == 201, response.text
            response = await curl.post("/hooks/" + "B" * 43, data={"body": "x"})
            assert (response.status_code, response.content) == (404, NOT_FOUND)
    finally:
        server.stop()
    with sync_client(redis_url) as sync:
        assert [m["body"] for m in stored(sync)] == ["build 512 passed"]
