"""Search over the archive: words in either language, filters, access, paging, bad input;
a result opened in context; the export."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from quart import Quart
from redis import Redis

from chat import membership, versions
from chat.archive import Archive, Entry
from chat.messages import Author, post_message
from tests.conftest import text_of
from tests.support import Inbox
from tests.test_archive import followed, wait_archived
from tests.test_live import signed_in_client

ADA = Author("p-ada", "Ada Lovelace", "ada@example.org", "s-ada")
BOB = Author("p-bob", "Bob", "bob@example.org", "s-bob")

SAID = [
    (ADA, "The café opens at nine"),
    (BOB, "我们明天在图书馆见面"),
    (ADA, "你好，今天的会议改到下午"),
    (BOB, "Deploy the new release on Friday"),
    (ADA, "ok then"),
]


async def say(
    app: Quart, said: list[tuple[Author, str]], slug: str = "general", start: int = 0
) -> list[str]:
    ids = []
    async with app.app_context():
        room = membership.Room(slug, membership.OPEN, slug)
        for index, (author, body) in enumerate(said, start):
            ids.append((await post_message(room, author, body, f"cid-{slug}-{index:04d}")).id)
    return ids


async def results(client: Any, query: str, **args: str) -> tuple[int, str]:
    response = await client.get("/search", query_string={"q": query, **args})
    return response.status_code, await response.get_data(as_text=True)


def found_ids(html: str) -> list[str]:
    return re.findall(r"at=([0-9]+-[0-9]+)#", html)


async def test_search_finds_english_and_chinese_words_and_marks_them(
    app: Quart, inbox: Inbox, own_archive: Path
) -> None:
    ids = await say(app, SAID)
    await wait_archived(own_archive, len(SAID))
    reader = await signed_in_client(app, inbox, "reader@example.org")
    for query, expected in [
        ("cafe", [ids[0]]),  # diacritics ignored
        ("CAFÉ opens", [ids[0]]),  # every word, any case
        ("图书馆", [ids[1]]),  # three characters: trigrams
        ("你好", [ids[2]]),  # two: the word index
        ("会", [ids[2]]),  # one
        ("ok", [ids[4]]),  # a short English word
        ("release friday", [ids[3]]),
        ("then ok", [ids[4]]),  # a long word and a short one: whole words only
        ("nine at", [ids[0]]),
        ("nine a", []),
        ("图书馆 明天", [ids[1]]),  # three and two characters: one index answers both
        ("会议 你好", [ids[2]]),
        ("e", []),  # one letter in no word on its own
        ("nothing like this", []),
    ]:
        status, html = await results(reader, query)
        assert status == 200, query
        assert found_ids(html) == expected, query
    _, html = await results(reader, "图书馆")
    assert "<mark>图书馆</mark>" in html and "#general" in html and "Bob" in html
    _, html = await results(reader, "cafe")
    assert "<mark>café</mark>" in html


async def test_filters_and_access(app: Quart, inbox: Inbox, own_archive: Path) -> None:
    ada = await signed_in_client(app, inbox, "ada@example.org")
    made = await ada.post("/rooms", form={"name": "Secret plans", "private": "1"})
    secret = made.headers["Location"].removeprefix("/rooms/")
    ids = await say(app, SAID)
    secret_ids = await say(app, [(ADA, "the secret release date is Friday")], secret)
    await wait_archived(own_archive, len(SAID))
    await wait_archived(own_archive, 1, secret)
    outsider = await signed_in_client(app, inbox, "outsider@example.org")
    # Ada's session person is not ADA.person; a member sees the private room's message.
    assert found_ids((await results(ada, "release"))[1]) == [secret_ids[0], ids[3]]
    assert found_ids((await results(outsider, "release"))[1]) == [ids[3]]
    assert found_ids((await results(outsider, f"release in:{secret}"))[1]) == []
    assert "Nothing found" in text_of((await results(outsider, f"release in:{secret}"))[1])
    assert found_ids((await results(outsider, "release in:general"))[1]) == [ids[3]]
    assert found_ids((await results(outsider, "release in:#general"))[1]) == [ids[3]]
    assert found_ids((await results(outsider, "from:bob release"))[1]) == [ids[3]]
    assert found_ids((await results(outsider, "from:ada release"))[1]) == []
    assert found_ids((await results(outsider, 'from:"ada lovelace" cafe'))[1]) == [ids[0]]
    assert found_ids((await results(outsider, "from:ada cafe"))[1]) == [ids[0]]
    # The private room's message opens only for its members.
    opened = await outsider.get(f"/rooms/{secret}", query_string={"at": secret_ids[0]})
    assert opened.status_code == 404


async def test_more_results_pages_through_everything(
    app: Quart, inbox: Inbox, own_archive: Path
) -> None:
    ids = await say(app, [(ADA, f"standup note {i}") for i in range(45)])
    await wait_archived(own_archive, 45)
    reader = await signed_in_client(app, inbox, "reader@example.org")
    seen: list[str] = []
    args: dict[str, str] = {}
    for _ in range(3):
        status, html = await results(reader, "standup", **args)
        assert status == 200
        seen += found_ids(html)
        more = re.search(r'href="/search\?q=standup&amp;before=([0-9]+)"', html)
        if not more:
            break
        assert "More results" in html
        args = {"before": more.group(1)}
    assert seen == list(reversed(ids))


async def test_bad_queries_get_clear_answers(app: Quart, inbox: Inbox, own_archive: Path) -> None:
    await say(app, SAID)
    await wait_archived(own_archive, len(SAID))
    reader = await signed_in_client(app, inbox, "reader@example.org")
    for query in [
        '"',
        '""',
        "NEAR(a b)",
        "a OR b",
        "*",
        "cafe*",
        "-cafe",
        "^cafe",
        "(",
        "':",
        "in:",
        "from:",
        "in:'",
        "\x00",
    ]:
        status, html = await results(reader, query)
        assert status == 200, query
        assert (
            "Traceback" not in html and "fts5" not in html.lower() and "sqlite" not in html.lower()
        )
    status, html = await results(reader, "")
    assert status == 200 and found_ids(html) == []
    status, html = await results(reader, "x" * 1000)
    assert status == 400 and "at most 200 characters" in text_of(html)
    for cursor in ("-1", "abc", "99999999999999999999", "١٢"):
        status, html = await results(reader, "cafe", before=cursor)
        assert status == 400 and "does not exist" in text_of(html), cursor


async def test_a_result_opens_in_context_with_the_message_marked(
    app: Quart, inbox: Inbox, own_archive: Path
) -> None:
    ids = await say(app, [(ADA, f"line {i}") for i in range(120)])
    await wait_archived(own_archive, 120)
    reader = await signed_in_client(app, inbox, "reader@example.org")
    response = await reader.get("/rooms/general", query_string={"at": ids[30]})
    assert response.status_code == 200
    html = await response.get_data(as_text=True)
    shown = re.findall(r'id="m-([0-9]+-[0-9]+)"', html)
    assert shown[0] == ids[0] and ids[30] in shown and shown[-1] == ids[55]
    assert f'class="msg found" aria-current="true" id="m-{ids[30]}"' in html
    assert "hx-ws:connect" not in html and "Go to the latest messages" in html
    for bad in ("nope", "1-0", "99999999999999999999999-0"):
        assert (await reader.get("/rooms/general", query_string={"at": bad})).status_code in (
            400,
            404,
        )


async def test_export_downloads_the_whole_room(
    make_app: Any, inbox: Inbox, own_archive: Path, redis_sync: Redis
) -> None:
    app = await make_app(HISTORY_MAXLEN=100, HISTORY_KEEP=20, ADMIN_EMAILS="admin@example.org")
    ids = await followed(app, redis_sync)
    ids += await say(app, [(BOB, f"line {i}\nsecond line") for i in range(1, 150)])
    await wait_archived(own_archive, 150)
    # Trimming happens every 64th message, below what the archive has acknowledged.
    ids += await say(app, [(BOB, f"line {i}\nsecond line") for i in range(150, 200)], start=150)
    await wait_archived(own_archive, 200)
    assert redis_sync.xlen("{r:general}:stream") < 150  # the rest is in the archive only
    reader = await signed_in_client(app, inbox, "reader@example.org")
    page = await (await reader.get("/rooms/general/export")).get_data(as_text=True)
    assert "JSON Lines" in page and "Plain text" in page
    response = await reader.get("/rooms/general/export.jsonl")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == 'attachment; filename="general-history.jsonl"'
    lines = [json.loads(line) for line in (await response.get_data(as_text=True)).splitlines()]
    assert [line["id"] for line in lines] == ids
    assert lines[0]["text"] == "message 0" and lines[0]["author"] == "Ada"
    text = await (await reader.get("/rooms/general/export.txt")).get_data(as_text=True)
    assert (
        text.count("\n[") == 199
        and text.startswith("[")
        and "Bob: line 199\n    second line" in text
    )
    # A private room: its members and admins only.
    ada = await signed_in_client(app, inbox, "ada@example.org")
    made = await ada.post("/rooms", form={"name": "Inner circle", "private": "1"})
    secret = made.headers["Location"].removeprefix("/rooms/")
    assert (await reader.get(f"/rooms/{secret}/export.jsonl")).status_code == 404
    assert (await ada.get(f"/rooms/{secret}/export.jsonl")).status_code == 200
    admin = await signed_in_client(app, inbox, "admin@example.org")
    assert (await admin.get(f"/rooms/{secret}/export.txt")).status_code == 200
    assert (await reader.get("/rooms/general/export.exe")).status_code == 404
    # A room named in Chinese downloads under its name.
    made = await ada.post("/rooms", form={"name": "技术讨论"})
    slug = made.headers["Location"].removeprefix("/rooms/")
    response = await ada.get(f"/rooms/{slug}/export.txt")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="room-history.txt"; '
        "filename*=UTF-8''%E6%8A%80%E6%9C%AF%E8%AE%A8%E8%AE%BA-history.txt"
    )


async def test_searches_and_exports_are_rate_limited_per_person(
    make_app: Any, inbox: Inbox
) -> None:
    app = await make_app(SEARCHES_PER_MINUTE=3, EXPORTS_PER_HOUR=2)
    reader = await signed_in_client(app, inbox, "reader@example.org")
    assert [(await results(reader, "cafe"))[0] for _ in range(3)] == [200, 200, 200]
    status, html = await results(reader, "cafe")
    assert status == 429 and "searching very fast" in text_of(html)
    assert (await results(reader, ""))[0] == 200  # an empty box costs nothing
    downloads = [(await reader.get("/rooms/general/export.txt")).status_code for _ in range(3)]
    assert downloads == [200, 200, 429]
    refused = await reader.get("/rooms/general/export.jsonl")
    assert "export 2 times an hour" in text_of(await refused.get_data(as_text=True))


def test_a_page_out_of_time_says_where_to_look_further(tmp_path: Path) -> None:
    """A filter that lets almost nothing through ends the page early with a cursor."""
    archive = Archive(tmp_path / "a.sqlite3")
    fields = {"name": "Bob", "pid": "p-bob", "ts": "0"}
    older = [Entry("mine", "999-0", {**fields, "n": "1"}, versions.first_text("word mine"))]
    newer = [
        Entry(
            "other", f"{1000 + i}-0", {**fields, "n": str(i + 1)}, versions.first_text(f"word {i}")
        )
        for i in range(600)
    ]
    archive.store(older + newer, [])
    found = archive.search(["mine"], ["word"], [], None, None, 21, budget_seconds=0)
    assert found.hits == [] and found.stopped_at is not None
    hits, pages = [], 1
    while found.stopped_at is not None:
        found = archive.search(["mine"], ["word"], [], None, found.stopped_at, 21, budget_seconds=0)
        hits += found.hits
        pages += 1
    assert [hit.entry.id for hit in hits] == ["999-0"] and pages == 19  # 32 rows a look
