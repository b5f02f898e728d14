"""The archive in a browser: search in any script opens a message in context, a private room
stays private, "Load older" reaches below what the stream keeps, and a room exports whole.

The session's server keeps one archive file for every test, while Redis is emptied for each:
so every text here carries a token of its own, no test assumes the archive is empty, and every
test talks in a room of its own. (A room page shows the archive below what its stream holds, so
messages archived in #general would show up in the #general of every later test.)
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from redis import Redis

from tests.e2e.people import Cast, Person, expect
from tests.e2e.processes import crash
from tests.servers import AppServer

pytestmark = pytest.mark.e2e

SNIPPET = re.compile(r'<span class="snippet">(.*?)</span>', re.DOTALL)
TAG = re.compile(r"<[^>]+>")


def new_token() -> str:
    return "t" + secrets.token_hex(5)


async def found_by_search(person: Person, query: str, token: str) -> bool:
    """Whether a result of `query`, as `person` searches, holds `token` (one request)."""
    response = await person.page.request.get(f"{person.base_url}/search?{urlencode({'q': query})}")
    assert response.ok, f"search {query!r}: {response.status}"
    html = await response.text()
    return any(token in TAG.sub("", snippet) for snippet in SNIPPET.findall(html))


async def wait_until_archived(
    person: Person, query: str, token: str, timeout: float = 15, interval: float = 0.4
) -> None:
    """The archiver follows a new room's stream within about 2 s and writes within 1 s more.

    Searches are limited (60 a minute per person), so this asks a few times, not in a loop."""
    deadline = time.monotonic() + timeout
    while not await found_by_search(person, query, token):
        if time.monotonic() > deadline:
            pytest.fail(f"{query!r} did not find {token} within {timeout} s")
        await asyncio.sleep(interval)


async def new_room(person: Person, name: str, private: bool = False) -> str:
    """Create a room from the room list and wait until its page is live; its slug."""
    page = person.page
    await page.get_by_label("Room name").fill(name)
    if private:
        await page.get_by_label("Private").check()
    await page.get_by_role("button", name="Create room").click()
    await page.wait_for_url(re.compile(r"/rooms/[^/?]+$"))
    await person.wait_until_live()
    return page.url.rsplit("/", 1)[1]


async def search_from_top_bar(person: Person, query: str) -> None:
    page = person.page
    box = page.get_by_role("searchbox", name="Search")
    await box.fill(query)
    await page.get_by_role("search").get_by_role("button", name="Search").click()
    await page.wait_for_url(f"{person.base_url}/search?{urlencode({'q': query})}")
    await expect(page.get_by_role("heading", name="Search", level=1)).to_be_visible()
    await expect(box).to_have_value(query)


async def open_result_in_context(person: Person, text: str, mark: str, slug: str) -> None:
    """Follow the result showing `text` (with `mark` marked) to the message in its room."""
    page = person.page
    result = page.locator(".result-link").filter(has_text=text)
    await expect(result).to_have_count(1)
    await expect(result.locator("mark").first).to_have_text(mark)
    href = await result.get_attribute("href")
    assert href is not None
    link = re.fullmatch(rf"/rooms/{re.escape(slug)}\?at=(\d+-\d+)#m-(\d+-\d+)", href)
    assert link is not None and link[1] == link[2], href
    await result.click()
    await page.wait_for_url(person.base_url + href)
    article = page.locator(f"#m-{link[1]}")
    await expect(article).to_have_class(re.compile(r"\bfound\b"))
    await expect(article).to_have_attribute("aria-current", "true")
    await expect(article.locator(".body")).to_have_text(text)
    await expect(page.locator("article[aria-current]")).to_have_count(1)
    await expect(article).to_be_in_viewport()
    # A look back in time: not live, nothing to type in, a way back to the present.
    await expect(page.get_by_role("link", name="Go to the latest messages")).to_be_visible()
    await expect(person.message_box).to_have_count(0)
    await expect(page.locator("main.room[hx-ws\\:connect]")).to_have_count(0)


async def test_search_finds_english_and_chinese_and_opens_the_message_in_context(
    cast: Cast,
) -> None:
    token = new_token()
    cafe = f"The café opens at nine {token}"
    library = f"我们明天在图书馆见面 {token}"
    ada = await cast.person("ada@example.org")
    bob = await cast.person("bob@example.org")
    slug = await new_room(ada, f"Travel {token}")
    assert slug == f"travel-{token}"
    await bob.page.goto(f"/rooms/{slug}")
    await bob.wait_until_live()
    for text in (f"Good morning {token}", cafe, f"Bring a cup {token}", library, "再见"):
        await ada.send(text)
    await wait_until_archived(ada, "cafe", token)
    await wait_until_archived(ada, "图书馆", token)

    # Diacritics are ignored: "cafe" finds "café", and marks it as it was written.
    await search_from_top_bar(bob, "cafe")
    await expect(bob.page.locator(".result-link").first).to_contain_text(token)  # newest first
    await open_result_in_context(bob, cafe, "café", slug)
    await expect(bob.messages.locator(".body").filter(has_text=token)).to_have_text(
        [f"Good morning {token}", cafe, f"Bring a cup {token}", library]
    )

    await search_from_top_bar(bob, "图书馆")
    result = bob.page.locator(".result-link").filter(has_text=library)
    await expect(result.locator(".result-room")).to_have_text(f"#Travel {token}")
    await expect(result.locator(".result-author")).to_have_text("ada")
    await open_result_in_context(bob, library, "图书馆", slug)

    # Two characters, too short for the trigram index: each Chinese character is a word there.
    await search_from_top_bar(bob, "明天")
    await open_result_in_context(bob, library, "明天", slug)

    await bob.page.get_by_role("link", name="Go to the latest messages").click()
    await bob.page.wait_for_url(f"{cast.base_url}/rooms/{slug}")
    await bob.wait_until_live()
    await ada.send(f"Still here {token}")
    await expect(bob.messages.last.locator(".body")).to_have_text(f"Still here {token}")


async def test_a_private_rooms_messages_are_found_by_its_members_only(cast: Cast) -> None:
    cast.expect_console("status of 404", "/rooms/p-")  # Bob opens Ada's result, refused
    token = new_token()
    secret = f"quarterly numbers are secret {token}"
    ada = await cast.person("ada@example.org")
    bob = await cast.person("bob@example.org")
    slug = await new_room(ada, f"Board {token}", private=True)
    assert re.fullmatch(r"p-[0-9a-f]{16}", slug)
    await ada.send(secret)
    await wait_until_archived(ada, f"quarterly {token}", token)

    # Ada, a member, finds it from the search box, also narrowed to the room.
    for query in (f"quarterly {token}", f"quarterly in:{slug}"):
        await search_from_top_bar(ada, query)
        await expect(ada.page.locator(".result-link").filter(has_text=secret)).to_have_count(1)
    await expect(ada.page.locator(".result-room")).to_have_text([f"🔒 Board {token}"])
    href = await ada.page.locator(".result-link").get_attribute("href")
    assert href is not None

    # Bob, who is not a member, never sees it: not among all results, not in the room itself.
    for query in (f"quarterly {token}", f"quarterly in:{slug}"):
        await search_from_top_bar(bob, query)
        await expect(bob.page.locator(".result-link")).to_have_count(0)
        await expect(bob.page.get_by_role("list", name="Results")).to_have_text(
            f"Nothing found for “{query}”."
        )
    await search_from_top_bar(bob, "quarterly")
    await expect(bob.page.get_by_role("list", name="Results")).not_to_contain_text(token)
    await expect(bob.page.get_by_text(f"Board {token}")).to_have_count(0)
    refused = await bob.page.goto(href)
    assert refused is not None and refused.status == 404
    await expect(bob.page.get_by_text(secret)).to_have_count(0)


@pytest.fixture
async def short_server(e2e_settings: dict[str, Any], cast: Cast) -> AsyncIterator[AppServer]:
    """A server whose rooms keep little in Redis: CHAT_HISTORY_MAXLEN 60, HISTORY_KEEP 20."""
    settings = {
        **e2e_settings,
        "HISTORY_MAXLEN": 60,
        "HISTORY_KEEP": 20,
        "WS_MESSAGES_PER_SECOND": 1000,  # this test posts fast
        "WS_BURST": 1000,
    }
    server = AppServer(settings)
    await asyncio.to_thread(server.start)
    yield server
    await cast.close()
    await asyncio.to_thread(crash, server)  # server.stop() waits out a 5 s graceful timeout


async def post_form(person: Person, slug: str, body: str) -> None:
    """The no-JavaScript way to send, with the person's cookies (no page needed)."""
    response = await person.page.request.post(
        f"{person.base_url}/rooms/{slug}/messages",
        form={"body": body, "client_id": secrets.token_hex(8)},
        max_redirects=0,
    )
    assert response.status == 303, f"{body!r}: {response.status} {await response.text()}"


async def test_load_older_reaches_the_first_message_below_what_the_stream_keeps(
    cast: Cast, short_server: AppServer, redis_sync: Redis
) -> None:
    posted = 150
    token = new_token()
    texts = [f"m{i:03d} {token}" for i in range(posted)]
    texts[0] = f"m000 {token} the very first message"
    ada = await cast.person("ada@example.org", base_url=short_server.url)
    slug = await new_room(ada, f"Load {token}")
    await ada.page.goto("/")  # the room is filled from outside the page

    # The archiver follows a room's stream once it has seen its first message.
    await post_form(ada, slug, texts[0])
    await wait_until_archived(ada, f"m000 {token}", token)
    for text in texts[1:]:
        await post_form(ada, slug, text)
    await wait_until_archived(ada, f"m{posted - 1:03d} {token}", token)
    length = redis_sync.xlen(f"{{r:{slug}}}:stream")
    assert length < posted, f"the stream was not trimmed: {length} entries"

    await ada.page.goto(f"/rooms/{slug}")
    await ada.wait_until_live()
    bodies = ada.messages.locator(".body")
    beginning = ada.page.get_by_text("This is the beginning of the room.")
    await expect(bodies).to_have_count(50)
    for _ in range(posted // 50 + 2):
        if await beginning.is_visible():
            break
        shown = await bodies.count()
        await ada.page.get_by_role("button", name="Load older").click()
        await expect(bodies).not_to_have_count(shown)
    await expect(beginning).to_be_visible()
    await expect(ada.page.get_by_role("button", name="Load older")).to_have_count(0)
    await expect(ada.page.locator("article.msg")).to_have_count(posted)
    await expect(bodies).to_have_text(texts)  # each once, oldest first
    await expect(bodies.first).to_be_visible()
    ids = await ada.page.locator("article.msg").evaluate_all("all => all.map(a => a.id)")
    assert len(set(ids)) == posted


async def download(person: Person, name: str) -> tuple[str, str]:
    """Click a download link of the export page: the file's suggested name and its text."""
    async with person.page.expect_download() as info:
        await person.page.get_by_role("link", name=name).click()
    downloaded = await info.value
    path = await downloaded.path()
    return downloaded.suggested_filename, Path(path).read_text(encoding="utf-8")


async def test_export_downloads_the_whole_room_in_order(cast: Cast) -> None:
    token = new_token()
    ada = await cast.person("ada@example.org")
    slug = await new_room(ada, f"Archive {token}")
    assert slug == f"archive-{token}"
    texts = [
        f"first {token}",
        'She said "hello" & left',
        "我们明天在图书馆见面",
        f"last {token}",
    ]
    for text in texts:
        await ada.send(text)

    async def export(name: str) -> tuple[str, str]:
        await ada.page.get_by_role("link", name="Export", exact=True).click()
        await ada.page.wait_for_url(f"{cast.base_url}/rooms/{slug}/export")
        await expect(ada.page.get_by_role("heading", level=1)).to_have_text(
            f"Export Archive {token}"
        )
        link = ada.page.get_by_role("link", name=name)
        await expect(link).to_have_attribute("download", "")
        found = await download(ada, name)
        await ada.page.get_by_role("link", name="Back to the room").click()
        await ada.page.wait_for_url(f"{cast.base_url}/rooms/{slug}")
        await ada.wait_until_live()
        return found

    # Straight away (from the stream: the archiver has not followed the new room yet) ...
    filename, jsonl = await export("JSON Lines")
    assert filename == f"{slug}-history.jsonl"
    lines = [json.loads(line) for line in jsonl.splitlines()]
    assert [line["text"] for line in lines] == texts
    assert {line["author"] for line in lines} == {"ada"}
    assert not any(line["deleted"] or line["bot"] for line in lines)
    ids = [tuple(map(int, line["id"].split("-"))) for line in lines]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)

    # ... and once archived (from the archive, the stream holding the same messages too).
    await wait_until_archived(ada, f"last {token}", token)
    filename, text = await export("Plain text")
    assert filename == f"{slug}-history.txt"
    stamp = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\] "
    shown = text.splitlines()
    assert len(shown) == len(texts), text
    for line, expected in zip(shown, texts, strict=True):
        assert re.fullmatch(stamp + re.escape(f"ada: {expected}"), line), line
