"""Chinese and English: catalogs, the language and time zone each person gets, live fragments
rendered once yet read in each viewer's language, emails, CJK names and addresses."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from babel.messages.pofile import read_po
from quart import Quart
from redis import Redis

from chat import i18n
from tests.conftest import sign_in, text_of
from tests.support import Inbox, SmtpServer
from tests.test_live import receive_until, send, signed_in_client

ROOT = Path(__file__).resolve().parent.parent
CHINESE = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}


# The catalogs


def catalog_ids(path: Path, locale: str | None = None) -> dict[Any, Any]:
    """Messages by their whole id: the singular, and the plural when there is one."""
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=locale)
    return {message.id: message for message in catalog if message.id}


def test_extraction_is_up_to_date(tmp_path: Path) -> None:
    """A new English string without `make translations` fails here."""
    fresh = tmp_path / "messages.pot"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-F",
            "babel.cfg",
            "-o",
            str(fresh),
            ".",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    assert set(catalog_ids(fresh)) == set(catalog_ids(ROOT / "translations" / "messages.pot"))


def test_every_message_has_a_chinese_translation() -> None:
    path = ROOT / "translations" / "zh_Hans" / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        catalog = read_po(handle, locale="zh_Hans")
    source = set(catalog_ids(ROOT / "translations" / "messages.pot"))
    translated = {}
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(strings), f"empty translation: {message.id!r}"
        assert not message.fuzzy, f"fuzzy translation: {message.id!r}"
        translated[message.id] = message
        # A translation brings no markup of its own: it lands in attributes and in HTML.
        source_text = "".join(message.id if isinstance(message.id, tuple) else [message.id])
        for char in '"<>&':
            assert all(s.count(char) <= source_text.count(char) for s in strings), message.id
    assert set(translated) == source
    problems = [(message.id, errors) for message, errors in catalog.check() if errors]
    assert problems == []  # placeholders match (python-format)


# Which language and time zone a page is in


@pytest.mark.parametrize(
    ("accept", "lang", "word"),
    [
        ("zh-CN,zh;q=0.9", "zh-Hans", "发送验证码"),
        ("zh-SG", "zh-Hans", "发送验证码"),
        ("zh", "zh-Hans", "发送验证码"),
        ("en-US,en;q=0.9", "en", "Send code"),
        ("fr-FR, de;q=0.8", "en", "Send code"),
        ("!!;q=nope,,, ;;q=\x7f", "en", "Send code"),
        ("zh-;;q=", "zh-Hans", "发送验证码"),
        ("zh-TW,en;q=0.5", "zh-Hans", "发送验证码"),  # until a zh_Hant catalog exists
        ("fr, zh;q=0", "en", "Send code"),  # q=0 means "not this one"
        ("", "en", "Send code"),
    ],
)
async def test_accept_language_picks_the_page_language(
    client: Any, accept: str, lang: str, word: str
) -> None:
    response = await client.get("/login", headers={"Accept-Language": accept})
    page = await response.get_data(as_text=True)
    assert response.status_code == 200
    assert f'<html lang="{lang}">' in page and word in page


async def test_the_language_form_sets_a_cookie_for_signed_out_pages(client: Any) -> None:
    response = await client.post("/language", form={"locale": "zh_Hans", "next": "/login"})
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    page = await (await client.get("/login", headers={"Accept-Language": "en"})).get_data(
        as_text=True
    )
    assert '<html lang="zh-Hans">' in page and "发送验证码" in page
    # Unknown in the form: no choice, so the browser's language decides again.
    await client.post("/language", form={"locale": "tlh", "next": "/login"})
    page = await (await client.get("/login", headers={"Accept-Language": "en"})).get_data(
        as_text=True
    )
    assert '<html lang="en">' in page


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example", "/\\evil", "x"])
async def test_the_language_form_only_goes_back_to_our_own_pages(client: Any, target: str) -> None:
    response = await client.post("/language", form={"locale": "en", "next": target})
    assert response.headers["Location"] == "/"


async def test_a_bad_language_cookie_falls_back_to_negotiation(client: Any) -> None:
    client.set_cookie("localhost", i18n.COOKIE, "../../etc")
    page = await (await client.get("/login", headers=CHINESE)).get_data(as_text=True)
    assert '<html lang="zh-Hans">' in page


async def test_settings_save_language_and_time_zone_for_the_person(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    page = await (await ada.get("/settings")).get_data(as_text=True)
    assert '<label for="settings-language">Language</label>' in page
    assert '<label for="time-zone">Time zone</label>' in page
    assert 'href="/settings">Settings</a>' in await (await ada.get("/")).get_data(as_text=True)
    bad = await ada.post("/settings", form={"locale": "zh_Hans", "time_zone": "Mars/Olympus"})
    assert bad.status_code == 400 and "not a time zone we know" in await bad.get_data(as_text=True)
    saved = await ada.post("/settings", form={"locale": "zh_Hans", "time_zone": "Asia/Shanghai"})
    assert saved.status_code == 303
    # Her choice wins over what her browser says, on every page from now on.
    home = await (await ada.get("/", headers={"Accept-Language": "en"})).get_data(as_text=True)
    assert '<html lang="zh-Hans">' in home and "所有聊天室" in home
    person = next(iter(redis_sync.hvals("people:by-email")))
    assert redis_sync.hmget(f"{{p:{person}}}:profile", ["locale", "tz"]) == [
        "zh_Hans",
        "Asia/Shanghai",
    ]


async def test_times_are_shown_in_the_persons_zone_and_language(
    app: Quart, inbox: Inbox, redis_sync: Redis
) -> None:
    # 12:05 today in Shanghai (04:05 UTC of Shanghai's day, whatever the hour of the run).
    shanghai = ZoneInfo("Asia/Shanghai")
    noon_utc = (
        datetime.now(shanghai).replace(hour=12, minute=5, second=0, microsecond=0).astimezone(UTC)
    )
    old = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
    for moment, body in ((old, "an old one"), (noon_utc, "a recent one")):
        redis_sync.xadd(
            "{r:general}:stream",
            {
                "author": "bob@example.org",
                "name": "bob",
                "body": body,
                "ts": str(int(moment.timestamp() * 1000)),
            },
        )
    ada = await signed_in_client(app, inbox, "ada@example.org")
    await ada.post("/settings", form={"locale": "zh_Hans", "time_zone": "Asia/Shanghai"})
    page = await (await ada.get("/rooms/general")).get_data(as_text=True)
    assert ">2025年3月4日</time>" in page  # an older day: the date, as Chinese writes it
    assert ">12:05</time>" in page  # 04:05 UTC is 12:05 in Shanghai
    assert "中国标准时间" in page  # the full date and zone on hover
    await ada.post("/settings", form={"locale": "en", "time_zone": "America/New_York"})
    page = await (await ada.get("/rooms/general")).get_data(as_text=True)
    assert ">Mar 4, 2025</time>" in page and "Eastern" in page


# Live: rendered once, read in each viewer's language and zone


async def test_one_message_reaches_each_viewer_in_their_own_language_and_zone(
    app: Quart, inbox: Inbox
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    await ada.post("/settings", form={"locale": "zh_Hans", "time_zone": "Asia/Shanghai"})
    bob = await signed_in_client(app, inbox, "bob@example.org")
    await bob.post("/settings", form={"locale": "en", "time_zone": "America/New_York"})
    async with ada.websocket("/rooms/general/ws") as a, bob.websocket("/rooms/general/ws") as b:
        await receive_until(a, 'id="online"')
        await receive_until(b, 'id="online"')
        async with ada.websocket("/rooms/general/ws"):
            pass  # a second tab of Ada's, closed again: no notice (the linger)
        await send(b, "hello there", client_id="bob-hello-0001")
        for_ada = (await receive_until(a, "hello there"))[-1]
        for_bob = (await receive_until(b, "hello there"))[-1]
    ada_time = re.search(r'title="([^"]+)">(\d\d:\d\d)</time>', for_ada)
    bob_time = re.search(r'title="([^"]+)">(\d\d:\d\d)</time>', for_bob)
    assert ada_time and bob_time and "\x01" not in for_ada + for_bob
    assert "中国标准时间" in ada_time.group(1) and "Eastern" in bob_time.group(1)
    hours = (int(ada_time.group(2)[:2]) - int(bob_time.group(2)[:2])) % 24
    assert hours in (12, 13)  # Shanghai is 12 or 13 hours ahead of New York


async def test_notices_reach_each_viewer_in_their_own_language(app: Quart, inbox: Inbox) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    await ada.post("/settings", form={"locale": "zh_Hans", "time_zone": "UTC"})
    bob = await signed_in_client(app, inbox, "bob@example.org")
    carol = await signed_in_client(app, inbox, "carol@example.org")
    async with ada.websocket("/rooms/general/ws") as a, bob.websocket("/rooms/general/ws") as b:
        await receive_until(a, 'id="online"')
        await receive_until(b, 'id="online"')
        async with carol.websocket("/rooms/general/ws"):
            assert "carol 加入了" in text_of((await receive_until(a, "carol"))[-1])
            assert "carol joined" in text_of((await receive_until(b, "carol"))[-1])


# The code email


async def test_the_code_email_is_in_the_language_of_the_page_that_asked(
    client: Any, inbox: Inbox
) -> None:
    await client.post("/login", form={"email": "li@example.org"}, headers=CHINESE)
    await client.post("/login", form={"email": "jo@example.org"}, headers={"Accept-Language": "en"})
    chinese = inbox.to("li@example.org")[-1]
    english = inbox.to("jo@example.org")[-1]
    assert re.fullmatch(r"\d{8} 是您的登录验证码", str(chinese["Subject"]))
    assert re.fullmatch(r"\d{8} is your sign-in code", str(english["Subject"]))
    for mail, words in ((chinese, "登录验证码是"), (english, "sign-in code for")):
        for part in ("plain", "html"):
            assert words in mail.get_body(preferencelist=(part,)).get_content()
    assert '<html lang="zh-Hans">' in chinese.get_body(preferencelist=("html",)).get_content()


# CJK text everywhere


async def test_rooms_named_in_chinese_get_readable_distinct_urls(app: Quart, inbox: Inbox) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    first = await ada.post("/rooms", form={"name": "技术"})
    second = await ada.post("/rooms", form={"name": "技术讨论"})
    assert first.headers["Location"] != second.headers["Location"]
    for response, name in ((first, "技术"), (second, "技术讨论")):
        page = await ada.get(response.headers["Location"])
        assert page.status_code == 200 and name in await page.get_data(as_text=True)
    async with ada.websocket(first.headers["Location"] + "/ws") as ws:
        await receive_until(ws, 'id="online"')
        await send(ws, "我们明天讨论数据库迁移", client_id="cjk-message-01")
        await receive_until(ws, "我们明天讨论数据库迁移")


async def test_an_internationalized_address_signs_in_end_to_end(client: Any, inbox: Inbox) -> None:
    await sign_in(client, inbox, "用户@例子.中国")
    home = await (await client.get("/")).get_data(as_text=True)
    assert "用户" in home


async def test_a_mail_server_without_smtputf8_gives_a_clear_error(make_app: Any) -> None:
    plain = SmtpServer(smtputf8=False)
    plain.start()
    try:
        app = await make_app(SMTP_URL=plain.url)
        response = await app.test_client().post("/login", form={"email": "josé@example.com"})
        assert response.status_code == 503
        assert "cannot deliver to addresses with non-Latin characters" in await response.get_data(
            as_text=True
        )
        # A non-ASCII domain alone needs no SMTPUTF8: the envelope uses its xn-- form.
        ok = await app.test_client().post("/login", form={"email": "li@例子.中国"})
        assert ok.status_code == 200
    finally:
        plain.stop()


async def test_an_internal_domain_the_operator_names_is_accepted(
    make_app: Any, inbox: Inbox
) -> None:
    app = await make_app(ALLOWED_EMAIL_DOMAINS="corp.local")
    response = await app.test_client().post("/login", form={"email": "dev@corp.local"})
    assert response.status_code == 200 and inbox.to("dev@corp.local")
    refused = await app.test_client().post("/login", form={"email": "dev@other.local"})
    assert refused.status_code == 400


def test_every_problem_the_code_names_has_words() -> None:
    """A problem kind without a sentence in templates/_problem.html would show nothing."""
    sentences = (ROOT / "templates" / "_problem.html").read_text()
    named = set()
    for path in [*ROOT.glob("chat/*.py"), *ROOT.glob("blueprints/*.py")]:
        text = path.read_text()
        named |= set(re.findall(r'\bproblem\(\s*"([a-z_]+)"', text))
        named |= set(re.findall(r'ShownError\(\s*\d+,\s*"([a-z_]+)"', text))
        named |= set(re.findall(r'RoomNameError\(\s*"([a-z_]+)"', text))
        named |= set(re.findall(r'kind = "([a-z_]+)"', text))
        named |= set(re.findall(r'Verdict\.[A-Z]+: "([a-z_]+)"', text))
    assert len(named) > 20
    missing = sorted(kind for kind in named if f'problem.kind == "{kind}"' not in sentences)
    assert missing == []


async def test_a_language_choice_can_go_back_to_automatic(client: Any) -> None:
    await client.post("/language", form={"locale": "zh_Hans", "next": "/login"})
    page = await (await client.get("/login", headers={"Accept-Language": "en"})).get_data(
        as_text=True
    )
    assert '<option value="zh_Hans" lang="zh-Hans" selected>简体中文</option>' in page
    await client.post("/language", form={"locale": "", "next": "/login"})
    page = await (await client.get("/login", headers={"Accept-Language": "en"})).get_data(
        as_text=True
    )
    assert '<option value="" selected>Automatic (browser language)</option>' in page


async def test_the_language_form_comes_back_to_pages_with_chinese_paths(
    app: Quart, inbox: Inbox
) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    made = await ada.post("/rooms", form={"name": "技术"})
    page = await (await ada.get(made.headers["Location"])).get_data(as_text=True)
    back = re.search(r'name="next" value="([^"]+)"', page).group(1)
    assert back == "/rooms/%E6%8A%80%E6%9C%AF"
    moved = await ada.post("/language", form={"locale": "en", "next": "/rooms/技术"})
    assert moved.headers["Location"] == "/rooms/%E6%8A%80%E6%9C%AF"  # headers are ASCII
    after_a_post = await ada.post("/rooms", form={"name": ""})  # the page answering a post
    assert 'name="next" value="/"' in await after_a_post.get_data(as_text=True)


async def test_the_language_cookie_is_secure_when_cookies_are(make_app: Any) -> None:
    app = await make_app(COOKIE_SECURE=True)
    response = await app.test_client().post(
        "/language", form={"locale": "zh_Hans", "next": "/"}, scheme="http"
    )
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("chat_locale=zh_Hans") and "Secure" in cookie and "HttpOnly" in cookie


async def test_refusals_before_any_view_speak_the_viewers_language(client: Any) -> None:
    response = await client.get("/login", headers={**CHINESE, "Host": "evil.example"})
    page = await response.get_data(as_text=True)
    assert response.status_code == 400
    assert '<html lang="zh-Hans">' in page and "此服务器不为该主机名提供服务" in page


async def test_an_allowed_domain_still_refuses_look_alike_addresses(make_app: Any) -> None:
    app = await make_app(ALLOWED_EMAIL_DOMAINS="corp.example,xn--fsqu00a.xn--fiqs8s")
    refused = await app.test_client().post("/login", form={"email": "\u0430lice@corp.example"})
    assert refused.status_code == 400  # a Cyrillic a in front of Latin letters
    named_in_ascii = await app.test_client().post("/login", form={"email": "li@例子.中国"})
    assert named_in_ascii.status_code == 200  # the operator wrote the domain as xn--


async def test_room_names_in_scripts_with_marks_keep_them(app: Quart, inbox: Inbox) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    urls = {
        (await ada.post("/rooms", form={"name": name})).headers["Location"]
        for name in ("हिन्द", "हिन्दी", "สวัสดี")
    }
    assert len(urls) == 3
