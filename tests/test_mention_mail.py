"""Missed mentions by email, with the real parts: the server with two workers, Redis, SMTP."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from quart import Quart
from redis import Redis

from chat import i18n, membership, mention_mail, people, store, unread
from chat.embedded_redis import EmbeddedRedis, free_port
from chat.history import stream_key
from chat.i18n import Variant
from chat.mention_mail import DUE, LEASED, Missed
from chat.messages import Author, post_message
from tests.conftest import empty, sync_client
from tests.servers import AppServer
from tests.support import Inbox, SmtpServer, chat_log, stored_messages
from tests.test_live import signed_in_client
from tests.test_server import server_settings, sign_in_http, wait_for_text

pytestmark = pytest.mark.slow

DELAY = 2  # seconds; the workers then poll every 0.5 s
NUMBERS = itertools.count(1)


def text_part(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


async def stored(redis: Any, item: Missed, mentioned: str) -> Missed:
    """The message (mentioning `mentioned`) in its room, and the item as the app queues it:
    with no text (the email shows the message as it is when sent)."""
    fields = {"author": "", "pid": "0123456789abcdef", "name": item.author, "body": item.body}
    fields["men"] = json.dumps([["x", mentioned]])
    await redis.xadd(stream_key(item.slug), fields, id=item.message_id)
    return replace(item, body="")


def person_of(redis: Redis, address: str) -> str:
    for person in redis.hvals("people:by-email"):
        if redis.hget(f"{{p:{person}}}:profile", "email") == address:
            return str(person)
    raise AssertionError(f"nobody is {address}")


def no_job(redis: Redis, person: str) -> bool:
    return redis.zscore(DUE, person) is None and redis.zscore(LEASED, person) is None


# First, before the module's server exists: these apps flush Redis and run their own loops.
async def test_the_email_speaks_the_persons_language_and_zone_and_skips_what_it_must(
    make_app: Any, inbox: Inbox, redis_sync: Redis
) -> None:
    app = await make_app(MENTION_EMAIL_DELAY_SECONDS=1)
    bob = await signed_in_client(app, inbox, "bob@example.org")
    # As the browser sends the ticked box: the hidden "0", then the box's "1".
    form = "locale=zh_Hans&time_zone=Asia%2FShanghai&mention_mail=0&mention_mail=1"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    assert (await bob.post("/settings", data=form, headers=headers)).status_code == 303
    person = person_of(redis_sync, "bob@example.org")
    assert redis_sync.hget(f"{{p:{person}}}:profile", "mention_mail") == "1"
    redis_sync.rpush(mention_mail.missed_key(person), "{not json", "[1, 2]", '{"slug": 5}')
    redis = store.redis(app)
    direct, _ = await membership.open_direct(
        redis, store.secret(app), {person: "bob", "0123456789abcdef": "ada"}, "0123456789abcdef"
    )
    sent_ms = int(time.time() * 1000)
    items = [
        Missed("general", "1-0", 1, "ada", "x" * 600, sent_ms),
        Missed(direct, "2-0", 1, "ada", "just for you", sent_ms),
        Missed("p-00000000000000aa", "3-0", 1, "ada", "a room bob is not in", sent_ms),
    ]
    for item in items:
        await mention_mail.schedule(redis, [person], await stored(redis, item, person), 1)
    deadline = time.monotonic() + 8
    while len(inbox.to("bob@example.org")) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    [_, mail] = inbox.to("bob@example.org")
    html = mail.get_body(preferencelist=("html",))
    assert html is not None and '<html lang="zh-Hans">' in str(html.get_content())
    with i18n.use(Variant("zh_Hans", "Asia/Shanghai")):
        subject = i18n.ngettext(
            "%(count)s message you missed on %(site)s",
            "%(count)s messages you missed on %(site)s",
            2,
        ) % {"count": 2, "site": "localhost"}
        direct_line = i18n.gettext("%(author)s wrote to you, %(time)s:")
    assert mail["Subject"] == subject
    text = text_part(mail)
    assert "+0800" in text and "x" * 500 + "…" in text and "x" * 501 not in text
    assert all(part in text for part in (direct_line % {"author": "ada", "time": "\0"}).split("\0"))
    assert "just for you" in text and "not in" not in text
    async with asyncio.timeout(2):  # the mail server has it a moment before the worker is done
        while redis_sync.llen(mention_mail.missed_key(person)) or not no_job(redis_sync, person):
            await asyncio.sleep(0.02)


async def test_a_post_whose_caller_is_cancelled_still_tells_the_mentioned(
    make_app: Any, redis_sync: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket closed right after sending cancels its handler while the message is posted:
    once stored, the message must still count as a mention and get its email job."""
    app = await make_app(MENTION_EMAIL_DELAY_SECONDS=60)
    bob = "00000000000000b0"
    entered, really_add = asyncio.Event(), unread.add_mentions

    async def add_mentions_slowly(*args: Any) -> None:
        entered.set()
        await asyncio.sleep(0.3)
        await really_add(*args)

    monkeypatch.setattr(unread, "add_mentions", add_mentions_slowly)
    async with app.app_context():
        await membership.note_visit(store.redis(), "general", bob, "bob")
        room = membership.Room("general", membership.OPEN, "general")
        author = Author("00000000000000a0", "ada", "ada@example.org", "s-ada")
        posting = asyncio.create_task(post_message(room, author, "@bob still there?", "c" * 12))
        await entered.wait()  # stored: the mentions are being counted
        posting.cancel()  # as Quart does when the peer disconnects
        with pytest.raises(asyncio.CancelledError):
            await posting
    async with asyncio.timeout(3):
        while not redis_sync.zcard(unread.mentions_key(bob)) or no_job(redis_sync, bob):
            await asyncio.sleep(0.02)
    assert redis_sync.llen(mention_mail.missed_key(bob)) == 1


@pytest.fixture
def mail_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """What chat.mention_mail logs."""
    with chat_log(caplog, "chat.mention_mail") as log:
        yield log


async def bob_of(app: Quart) -> str:
    async with app.app_context():
        return await people.person_for(store.redis(app), "bob@example.org")


async def test_a_failed_send_is_retried_later_without_a_traceback(
    make_app: Any, redis_sync: Redis, mail_log: pytest.LogCaptureFixture
) -> None:
    app = await make_app(MENTION_EMAIL_DELAY_SECONDS=1, SMTP_URL=f"smtp://127.0.0.1:{free_port()}")
    person = await bob_of(app)
    item = Missed("general", "1-0", 1, "ada", "hello", int(time.time() * 1000))
    await mention_mail.schedule(
        store.redis(app), [person], await stored(store.redis(app), item, person), 1
    )
    async with asyncio.timeout(8):
        while (redis_sync.zscore(DUE, person) or 0) / 1000 < time.time() + 30:
            await asyncio.sleep(0.05)
    assert redis_sync.llen(mention_mail.missed_key(person)) == 1  # kept for the next try
    assert "mention email not sent (try 1, will retry)" in mail_log.text
    assert not [record for record in mail_log.records if record.exc_info]


async def test_the_loop_outlives_redis_going_away_and_coming_back(
    make_app: Any, inbox: Inbox, tmp_path: Path, mail_log: pytest.LogCaptureFixture
) -> None:
    own = EmbeddedRedis(tmp_path / "redis", appendonly=True)
    own.start()
    try:
        app = await make_app(MENTION_EMAIL_DELAY_SECONDS=1, REDIS_URL=own.url)
        person = await bob_of(app)
        await asyncio.to_thread(own.stop)
        await asyncio.sleep(1.5)  # three rounds against no Redis
        await asyncio.to_thread(own.start)
        item = Missed("general", "1-0", 1, "ada", "after the outage", int(time.time() * 1000))
        item = await stored(store.redis(app), item, person)
        await mention_mail.schedule(store.redis(app), [person], item, 1)
        async with asyncio.timeout(8):
            while not inbox.to("bob@example.org"):
                await asyncio.sleep(0.05)
        assert "after the outage" in text_part(inbox.to("bob@example.org")[0])
        assert "mention emails wait, Redis unreachable" in mail_log.text
        assert "mention emails: Redis is back" in mail_log.text
        assert not [record for record in mail_log.records if record.exc_info]
    finally:
        own.stop()


@pytest.fixture(scope="module")
def server(
    redis_server: str, smtp_server: SmtpServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppServer]:
    """One server for the tests below (starting and stopping one takes seconds); each test
    brings its own people."""
    empty(redis_server)
    settings = server_settings(redis_server, smtp_server, MENTION_EMAIL_DELAY_SECONDS=DELAY)
    log_path = tmp_path_factory.mktemp("mention-mail") / "server.log"
    app_server = AppServer(settings, workers=2, log_path=log_path)
    app_server.start()
    yield app_server
    app_server.stop()


@pytest.fixture(scope="module")
def redis(redis_server: str) -> Iterator[Redis]:
    with sync_client(redis_server) as client:
        yield client


@dataclass
class Pair:
    ada: str  # cookie
    bob: str  # cookie
    ada_name: str
    bob_name: str
    bob_address: str
    bob_id: str


async def ada_and_bob(server: AppServer, inbox: Inbox, redis: Redis) -> Pair:
    """Both signed in; Bob opened general once, so "@bob<n>" names him there."""
    number = next(NUMBERS)
    bob_address = f"bob{number}@example.org"
    ada = await sign_in_http(server.url, inbox, f"ada{number}@example.org")
    bob = await sign_in_http(server.url, inbox, bob_address)
    async with httpx.AsyncClient(base_url=server.url, headers={"Cookie": bob}) as client:
        assert (await client.get("/rooms/general")).status_code == 200
    return Pair(
        ada, bob, f"ada{number}", f"bob{number}", bob_address, person_of(redis, bob_address)
    )


async def post(server: AppServer, cookie: str, redis: Redis, *bodies: str) -> list[str]:
    """Post over the websocket as Ada's browser does; the stream ids of the stored messages."""
    url = f"ws://127.0.0.1:{server.port}/rooms/general/ws"
    async with websockets.connect(url, additional_headers={"Cookie": cookie}) as ws:
        for body in bodies:  # a fresh client id each, as each fresh compose form has
            await ws.send(json.dumps({"body": body, "client_id": secrets.token_urlsafe(12)}))
        async with asyncio.timeout(5):
            while True:
                stored = {m["body"]: m["id"] for m in stored_messages(redis)}
                if all(body in stored for body in bodies):
                    return [stored[body] for body in bodies]
                await asyncio.sleep(0.02)


def mention_mails(inbox: Inbox, address: str) -> list[EmailMessage]:
    return [m for m in inbox.to(address) if "missed" in str(m["Subject"])]


async def wait_for_mails(inbox: Inbox, address: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(mention_mails(inbox, address)) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def test_a_missed_mention_sends_exactly_one_email_after_the_delay(
    server: AppServer, inbox: Inbox, redis: Redis
) -> None:
    pair = await ada_and_bob(server, inbox, redis)
    sent = time.monotonic()
    body = f"@{pair.bob_name} hello from the mention test"
    [message_id] = await post(server, pair.ada, redis, body)
    await wait_for_mails(inbox, pair.bob_address, 1, timeout=DELAY + 8)
    assert time.monotonic() - sent >= DELAY - 0.1
    # Well past the delay, and many polls of both workers later: still exactly one.
    await asyncio.sleep(DELAY + 1)
    [mail] = mention_mails(inbox, pair.bob_address)
    assert mail["Subject"] == f"1 message you missed on 127.0.0.1:{server.port}"
    text = text_part(mail)
    assert f"{pair.ada_name} in general," in text and body in text
    link = f"{server.url}/rooms/general#m-{message_id}"
    html = mail.get_body(preferencelist=("html",))
    assert link in text and html is not None and f'href="{link}"' in str(html.get_content())
    assert [m for m in inbox.messages if "missed" in str(m["Subject"])] == [mail]  # not Ada
    assert no_job(redis, pair.bob_id)


async def test_no_email_when_the_room_was_opened_within_the_delay(
    server: AppServer, inbox: Inbox, redis: Redis
) -> None:
    pair = await ada_and_bob(server, inbox, redis)
    await post(server, pair.ada, redis, f"@{pair.bob_name} are you there?")
    url = f"ws://127.0.0.1:{server.port}/rooms/general/ws"
    async with websockets.connect(url, additional_headers={"Cookie": pair.bob}) as ws:
        await wait_for_text(ws, "are you there?")
        await asyncio.sleep(0.5)  # reading it, as a person does
    await asyncio.sleep(DELAY + 2)
    assert mention_mails(inbox, pair.bob_address) == []
    assert no_job(redis, pair.bob_id)  # the job ran, and found the mention seen


async def test_no_email_when_turned_off_in_settings(
    server: AppServer, inbox: Inbox, redis: Redis
) -> None:
    pair = await ada_and_bob(server, inbox, redis)
    async with httpx.AsyncClient(base_url=server.url, headers={"Cookie": pair.bob}) as client:
        page = (await client.get("/settings")).text
        assert 'name="mention_mail" value="1" checked' in page
        assert '<label for="mention-mail">Email me about mentions I miss</label>' in page
        form = {"locale": "", "time_zone": "UTC", "mention_mail": "0"}  # the box unticked
        assert (await client.post("/settings", data=form)).status_code == 303
        assert 'name="mention_mail" value="1">' in (await client.get("/settings")).text
    await post(server, pair.ada, redis, f"@{pair.bob_name} you will not hear of this")
    await asyncio.sleep(DELAY + 2)
    assert mention_mails(inbox, pair.bob_address) == []
    assert no_job(redis, pair.bob_id)


async def test_mentions_before_the_email_share_it_and_later_ones_wait_an_hour(
    server: AppServer, inbox: Inbox, redis: Redis
) -> None:
    pair = await ada_and_bob(server, inbox, redis)
    bodies = [f"@{pair.bob_name} first of two", f"@{pair.bob_name} second of two"]
    first, second = await post(server, pair.ada, redis, *bodies)
    await wait_for_mails(inbox, pair.bob_address, 1, timeout=DELAY + 8)
    [mail] = mention_mails(inbox, pair.bob_address)
    assert mail["Subject"].startswith("2 messages you missed")
    text = text_part(mail)
    assert text.index(f"#m-{first}") < text.index(f"#m-{second}")
    await post(server, pair.ada, redis, f"@{pair.bob_name} third, after the email")
    await asyncio.sleep(DELAY + 2)
    assert len(mention_mails(inbox, pair.bob_address)) == 1  # CHAT_MENTION_EMAILS_PER_HOUR=1
    # A worker's round takes the job out of DUE while it looks at it (a lease): wait it out.
    async with asyncio.timeout(5):
        while (due := redis.zscore(DUE, pair.bob_id)) is None:
            await asyncio.sleep(0.05)
    assert due is not None and 3000 < due / 1000 - time.time() <= 3600  # when the hour is over
    waiting = json.loads(redis.lindex(mention_mail.missed_key(pair.bob_id), 0))
    assert waiting["body"] == ""  # the text is read from the room when the email goes out
