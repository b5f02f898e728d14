"""The archive: every message kept for good, exactly once, and trimming that waits for it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from redis import Redis

from chat import archiver, changes, membership, store
from chat.archive import Archive, Entry
from chat.messages import Author, post_message
from tests.support import Inbox, chat_log
from tests.test_live import signed_in_client

ADA = Author("p-ada", "Ada", "ada@example.org", "s-ada")


@pytest.fixture
def archive_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """What chat.archive logs."""
    with chat_log(caplog, "chat.archive") as log:
        yield log


async def post_many(app: Quart, count: int, slug: str = "general", start: int = 0) -> list[str]:
    """`count` messages "message <i>" in a room, as the app posts them; their ids."""
    ids = []
    async with app.app_context():
        room = membership.Room(slug, membership.OPEN, slug)
        for index in range(start, start + count):
            posted = await post_message(room, ADA, f"message {index}", f"client-{index:06d}")
            ids.append(posted.id)
    return ids


def archived(path: Path, slug: str = "general") -> list[tuple[str, str]]:
    """(stream id, state JSON) of every archived message of the room, in order. Read-only,
    and nothing before the app has made the file: a test reading must not take the locks
    that setting the file up needs."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = db.execute(
                "SELECT ms, seq, state FROM messages WHERE room = ? ORDER BY ms, seq", (slug,)
            ).fetchall()
    except sqlite3.OperationalError as error:
        if "unable to open" in str(error) or "no such table" in str(error):
            return []  # not made yet
        raise
    return [(f"{ms}-{seq}", state) for ms, seq, state in rows]


async def followed(app: Quart, redis_sync: Redis, slug: str = "general") -> list[str]:
    """Post a room's first message and wait for the archive to follow its stream (it looks
    for new rooms every two seconds)."""
    ids = await post_many(app, 1, slug)
    group = app.config["ARCHIVE_GROUP"]
    async with asyncio.timeout(10):
        while group not in {g["name"] for g in redis_sync.xinfo_groups(f"{{r:{slug}}}:stream")}:
            await asyncio.sleep(0.05)
    return ids


async def wait_archived(path: Path, count: int, slug: str = "general", timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while len(archived(path, slug)) < count:
            await asyncio.sleep(0.05)


async def wait_acknowledged(redis: Redis, stream: str = "{r:general}:stream") -> None:
    """Every entry acknowledged by the archive's group: the archiver writes a batch and then
    acknowledges it, so a test that saw the rows waits a moment for the XACK."""
    async with asyncio.timeout(10):
        while redis.xinfo_groups(stream)[0]["pending"]:
            await asyncio.sleep(0.05)


async def test_every_message_is_archived_once_with_its_changes(
    app: Quart, own_archive: Path, redis_sync: Redis
) -> None:
    ids = await post_many(app, 30)
    await wait_archived(own_archive, 30)
    async with app.app_context():
        room = membership.Room("general", membership.OPEN, "general")
        await changes.edit(room, ADA.person, ids[3], "message three, fixed")
        await changes.delete(room, ADA.person, ids[4], admin=False)
    async with asyncio.timeout(10):
        while '"d": 1' not in dict(archived(own_archive))[ids[4]]:
            await asyncio.sleep(0.05)
    rows = dict(archived(own_archive))
    assert list(rows) == ids  # all, once, in order
    assert "message 4" not in rows[ids[4]] and '"d": 1' in rows[ids[4]]
    with sqlite3.connect(own_archive) as db:  # the deleted text is in no index either
        assert (
            db.execute("SELECT count(*) FROM grams WHERE grams MATCH '\"message 4\"'").fetchone()[0]
            == 0
        )
        assert (
            db.execute("SELECT count(*) FROM grams WHERE grams MATCH '\"fixed\"'").fetchone()[0]
            == 1
        )
    await wait_acknowledged(redis_sync)  # nothing waits in the group


async def test_a_batch_written_but_not_acknowledged_is_not_written_twice(
    app: Quart, own_archive: Path, redis_sync: Redis, tmp_path: Path
) -> None:
    """A crash between the SQLite commit and XACK: the batch comes again from the pending list."""
    path = tmp_path / "crashed.sqlite3"
    await post_many(app, 20)
    async with app.app_context():
        crashed = archiver.Archiver(store.redis(), Archive(path), "crash-host")
        await crashed._refresh()
        replies = await crashed.redis.xreadgroup(
            "crash-host", archiver.CONSUMER, {"{r:general}:stream": ">"}, count=500
        )
        new, changed = await crashed._entries(replies)
        Archive(path).store(new, changed)  # written, then "killed" before XACK
        assert redis_sync.xpending("{r:general}:stream", "crash-host")["pending"] == 20
        again = archiver.Archiver(store.redis(), Archive(path), "crash-host")
        await again._catch_up_pending()
    assert redis_sync.xpending("{r:general}:stream", "crash-host")["pending"] == 0
    assert len(archived(path)) == 20
    assert len({entry_id for entry_id, _ in archived(path)}) == 20


async def test_trimming_waits_for_every_archive(
    make_app: Any, own_archive: Path, redis_sync: Redis
) -> None:
    """A host whose archive lags keeps its messages in Redis up to the hard cap."""
    app = await make_app(HISTORY_MAXLEN=1000, HISTORY_KEEP=40)
    await post_many(app, 1)
    redis_sync.xgroup_create("{r:general}:stream", "slow-host", id="0")
    await post_many(app, 300, start=1)
    await wait_archived(own_archive, 301)
    assert redis_sync.xlen("{r:general}:stream") == 301  # slow-host has read nothing
    # slow-host reads and acknowledges everything: now the stream may shrink to the hot window.
    read = redis_sync.xreadgroup("slow-host", "c", {"{r:general}:stream": ">"}, count=1000)
    redis_sync.xack("{r:general}:stream", "slow-host", *(i for i, _ in read[0][1]))
    await post_many(app, 64, start=301)
    await wait_archived(own_archive, 365)
    assert 40 <= redis_sync.xlen("{r:general}:stream") <= 40 + 64


async def test_a_gap_past_the_hard_cap_is_logged_and_shown(
    make_app: Any, own_archive: Path, redis_sync: Redis, archive_log: Any
) -> None:
    """This host's archive is down (another process holds its lock) while the room outgrows
    the hard cap: when it comes back it archives what is left and reports the rest."""
    with archiver.host_lock(own_archive.with_name(own_archive.name + ".lock")) as held:
        assert held
        app = await make_app(HISTORY_MAXLEN=100, HISTORY_KEEP=50)
        await post_many(app, 400)
        assert redis_sync.xlen("{r:general}:stream") < 400  # the cap held
    kept = len(redis_sync.xrange("{r:general}:stream"))
    await wait_archived(own_archive, kept)
    gaps, missing = Archive(own_archive).gaps()
    assert gaps == 1 and missing == 400 - kept  # the first kept follows the missing ones
    assert any("trimmed from Redis before" in r.getMessage() for r in archive_log.records)
    health = await (await app.test_client().get("/healthz")).get_json()
    assert health["archive"] == {"status": "ok", "gaps": 1, "messages_missing": 400 - kept}


async def test_a_second_host_fills_its_own_archive(
    app: Quart, own_archive: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other-host.sqlite3"
    ids = await post_many(app, 25)
    async with app.app_context():
        second = archiver.Archiver(store.redis(), Archive(other), "other-host")
        task = asyncio.create_task(second.run())
        try:
            await wait_archived(other, 25)
            await wait_archived(own_archive, 25)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert [i for i, _ in archived(other)] == ids == [i for i, _ in archived(own_archive)]


async def test_load_older_goes_on_from_the_archive_to_the_first_message(
    make_app: Any, own_archive: Path, inbox: Inbox, redis_sync: Redis
) -> None:
    app = await make_app(HISTORY_MAXLEN=200, HISTORY_KEEP=30)
    ids = await followed(app, redis_sync)
    ids += await post_many(app, 259, start=1)
    await wait_archived(own_archive, 260)
    ids += await post_many(app, 64, start=260)  # trims what is archived to the hot window
    assert redis_sync.xlen("{r:general}:stream") < 200
    client = await signed_in_client(app, inbox, "reader@example.org")
    page = await (await client.get("/rooms/general")).get_data(as_text=True)
    seen = _ids(page)
    while "/older?before=" in page:
        before = page.split("/older?before=")[1].split('"')[0]
        page = await (await client.get(f"/rooms/general/older?before={before}")).get_data(
            as_text=True
        )
        seen = _ids(page) + seen
    assert "This is the beginning of the room." in page
    assert seen == sorted(set(seen), key=lambda i: tuple(map(int, i.split("-"))))  # no duplicate
    assert seen == ids


def _ids(html: str) -> list[str]:
    return re.findall(r'<article class="msg[^"]*" id="m-([0-9]+-[0-9]+)"', html)


async def test_an_unreadable_archive_is_said_so_and_live_chat_goes_on(
    make_app: Any, own_archive: Path, inbox: Inbox, archive_log: Any
) -> None:
    own_archive.write_bytes(b"this is not a database" * 100)
    app = await make_app()
    await post_many(app, 3)
    reader = await signed_in_client(app, inbox, "reader@example.org")
    room = await reader.get("/rooms/general")
    assert room.status_code == 200 and "message 2" in await room.get_data(as_text=True)
    searched = await reader.get("/search", query_string={"q": "message"})
    assert searched.status_code == 503
    assert "Older history cannot be read right now" in await searched.get_data(as_text=True)
    older = await reader.get("/rooms/general/older", query_string={"before": "1-0"})
    assert older.status_code == 503
    health = await (await reader.get("/healthz")).get_json()
    assert health["status"] == "ok" and health["archive"]["status"] == "unavailable"
    assert any("archive: cannot read" in r.getMessage() for r in archive_log.records)
    async with asyncio.timeout(5):  # the archiver says it cannot write, and keeps trying
        while not any("archive: cannot write" in r.getMessage() for r in archive_log.records):
            await asyncio.sleep(0.05)


def test_erasing_a_person_reaches_trimmed_and_older_messages(tmp_path: Path) -> None:
    """What only the archive still holds: the person's messages (with a person id, or from
    before ids, found by the tag of their address), and their reactions on others' messages."""
    store_ = Archive(tmp_path / "archive.sqlite3")
    ada = {"pid": "p-ada", "name": "Ada Lovelace", "n": "1", "ts": "1"}
    legacy = {"author": "ada@example.org", "name": "Ada Lovelace", "n": "2", "ts": "2"}
    other_legacy = {"author": "cy@example.org", "name": "Cy", "n": "3", "ts": "3"}
    bob = {"pid": "p-bob", "name": "Bob", "n": "4", "ts": "4"}
    reacted = {"v": 1, "b": "bob here", "r": {"👍": [["p-ada", "Ada"], ["p-bob", "Bob"]]}}
    store_.store(
        [
            Entry("general", "1-0", ada, json.dumps({"v": 0, "b": "quixotic words"})),
            Entry("general", "2-0", legacy, json.dumps({"v": 0, "b": "legacy quixote"})),
            Entry("general", "3-0", other_legacy, json.dumps({"v": 0, "b": "cy quixote"})),
            Entry("general", "4-0", bob, json.dumps(reacted)),
        ],
        [],
    )
    changed = store_.erase_person("p-ada", "tag:ada@example.org", lambda a: "tag:" + a)
    assert changed == 3
    db = store_.connection()
    rows = {
        f"{ms}-{seq}": (json.loads(fields), json.loads(state), who)
        for ms, seq, fields, state, who in db.execute(
            "SELECT ms, seq, fields, state, who FROM messages"
        )
    }
    assert rows["1-0"][1] == {"d": 1, "v": 1} and rows["1-0"][2] == ""
    assert rows["2-0"][1] == {"d": 1, "v": 1} and "author" not in rows["2-0"][0]
    assert rows["2-0"][2] == ""
    assert rows["3-0"][1] == {"v": 0, "b": "cy quixote"} and rows["3-0"][2] == "cy"
    assert rows["4-0"][1] == {"v": 2, "b": "bob here", "r": {"👍": [["p-bob", "Bob"]]}}
    found = [r for (r,) in db.execute("SELECT rowid FROM grams WHERE grams MATCH 'quixot'")]
    assert len(found) == 1  # Cy's message only
    assert store_.erase_person("p-ada", "tag:ada@example.org", lambda a: "tag:" + a) == 0
