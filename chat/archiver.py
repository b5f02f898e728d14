"""Feeding the archive: one Redis Streams consumer group per host reads every room's stream.

Each host keeps its own archive file and its own group (CHAT_ARCHIVE_GROUP, the host name by
default), so hosts share no database. On a host, the workers race for a lock file next to the
archive; the winner archives (consumer "archiver"), the others wait and take over if it dies.
A batch is written in one SQLite transaction and then acknowledged (XACK): after a crash
between the two the batch comes again from the group's pending list, and the archive, keyed by
room and stream id, writes nothing twice.

A room's stream is listed in ARCHIVED_STREAMS at its first message and every 64th (LIST_EVERY;
chat/messages.py, after the post script, which touches only the room's slot). The script
trims the stream only below what every group has acknowledged (TRIM_ARCHIVED);
CHAT_HISTORY_MAXLEN stays the hard cap. Messages trimmed before this host's
archive read them leave a hole in the room's message numbers: it is logged and counted
(/healthz), never skipped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from quart import Quart, current_app
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from chat import history, keys, people, store, tasks, versions
from chat.archive import Archive, Entry
from chat.problems import ShownError

log = logging.getLogger("chat.archive")

ARCHIVE_DOWN = (sqlite3.Error, OSError)

ARCHIVED_STREAMS = "archive:streams"
# Deleted accounts (chat/leaving.py): every host's archive erases each person listed here.
ERASURES = "archive:erasures"
CONSUMER = "archiver"
BATCH = 500  # entries per stream per read
MAX_PER_READ = 2000
KEYS_PER_READ = 200  # streams per XREADGROUP call
BLOCK_MS = 1000
GATHER_SECONDS = 0.25  # how long a new message may wait to be archived (searchable)
REFRESH_SECONDS = 2.0
LOCK_RETRY_SECONDS = 2.0
WRITE_RETRY_SECONDS = 10.0

# How often (in messages) a room's stream is listed again, in case a listing was lost.
LIST_EVERY = 64

# For the post script, after its XADD (KEYS[1] the stream, `n` the
# message's number, ARGV[8] how many entries the stream keeps once every archive has them).
# Trims at most the entries below the oldest one some group has not acknowledged (its oldest
# pending entry, or past its last delivered one), and never the newest ARGV[8].
TRIM_ARCHIVED = """
if n == 1 or n % 64 == 0 then
  local keep = tonumber(ARGV[8])
  local len = redis.call('XLEN', KEYS[1])
  if len > keep then
    local floor = nil
    for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
      local info = {}
      for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
      local need = info['last-delivered-id']
      if info['pending'] > 0 then need = redis.call('XPENDING', KEYS[1], info['name'])[2] end
      if floor == nil or pad(need) < pad(floor) then floor = need end
    end
    if floor and floor ~= '0-0' then
      local old = redis.call('XRANGE', KEYS[1], '-', '(' .. floor, 'COUNT', len - keep)
      if #old > 0 then
        local ms, seq = string.match(old[#old][1], '(%d+)-(%d+)')
        redis.call('XTRIM', KEYS[1], 'MINID', ms .. '-' .. string.format('%d', tonumber(seq) + 1))
      end
    end
  end
end
"""


async def list_stream(redis: Redis, slug: str) -> None:
    """Have every host's archiver follow this room's stream."""
    await redis.sadd(ARCHIVED_STREAMS, history.stream_key(slug))


def slug_of(stream: str) -> str:
    return keys.room_of(stream)


def archive(app: Quart | None = None) -> Archive:
    return (app or current_app).extensions["archive"]  # type: ignore[no-any-return]


async def read(method: str, *args: Any, app: Quart | None = None) -> Any:
    """Call one of the archive's reading methods off the event loop (ARCHIVE_DOWN if the
    file cannot be read)."""
    found = archive(app)
    pool: ThreadPoolExecutor = (app or current_app).extensions["archive_readers"]
    return await asyncio.get_running_loop().run_in_executor(
        pool, lambda: getattr(found, method)(*args)
    )


async def read_or_refuse(method: str, *args: Any) -> Any:
    """`read`, answering a broken archive with a clear 503 instead of a traceback."""
    try:
        return await read(method, *args)
    except ARCHIVE_DOWN as error:
        log.error("archive: cannot read: %s", error)
        raise ShownError(503, "archive_unavailable") from error


@contextlib.contextmanager
def host_lock(path: Path) -> Iterator[bool]:
    """Whether this process holds the host's archiver lock (held until the block ends)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle: IO[bytes] = open(path, "ab")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        handle.close()  # releases the lock


class Archiver:
    """Reads every room's stream as group `group`, writes to `archive`, acknowledges."""

    def __init__(
        self, redis: Redis, archive: Archive, group: str, secret: bytes | None = None
    ) -> None:
        self.redis = redis
        self.archive = archive
        self.group = group
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="archive-writer")
        self.streams: list[str] = []
        self.batches: list[list[list[str]]] = []
        self.last_number: dict[str, int] = {}
        key = secret if secret is not None else store.secret()  # the writer has no app context
        self.tag_of = lambda author: people.legacy_tag(author, key)

    async def _write(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.writer, function, *args)

    async def run(self) -> None:
        """Archive until cancelled; a Redis outage is waited out."""
        discovered = False
        while True:
            try:
                if not discovered:
                    await self._discover()
                    discovered = True
                await self._catch_up_pending()
                await self._follow()
            except store.REDIS_DOWN as error:
                log.warning("archive: Redis unreachable (%s); retrying", error)
                await asyncio.sleep(1)

    async def _discover(self) -> None:
        """Streams whose listing was lost (once per start)."""
        found = [key async for key in self.redis.scan_iter(match="{r:*}:stream", count=1000)]
        if found:
            await self.redis.sadd(ARCHIVED_STREAMS, *found)

    async def _refresh(self) -> None:
        listed = [ERASURES, *sorted(await self.redis.smembers(ARCHIVED_STREAMS))]
        for stream in set(listed) - set(self.streams):
            try:
                await self.redis.xgroup_create(
                    stream, self.group, id="0", mkstream=stream == ERASURES
                )
            except ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    log.warning("archive: cannot follow %s: %s", stream, error)
                    continue
        if listed != self.streams:
            self.streams = listed
            self.batches = self._batches()

    def _batches(self) -> list[list[list[str]]]:
        """The streams in batches of up to KEYS_PER_READ, each a list of one-slot groups (a
        cluster reads each group with its own XREADGROUP, all of a batch in one pipeline)."""
        batches: list[list[list[str]]] = [[]]
        size = 0
        for group in store.by_slot(self.redis, self.streams):
            for chunk in _chunks(group, KEYS_PER_READ):
                if size + len(chunk) > KEYS_PER_READ and batches[-1]:
                    batches.append([])
                    size = 0
                batches[-1].append(chunk)
                size += len(chunk)
        return [batch for batch in batches if batch]

    async def _catch_up_pending(self) -> None:
        """What this consumer read but had not acknowledged when it stopped."""
        await self._refresh()
        for batch in self.batches:
            while await self._read(batch, "0", block=None):
                pass

    async def _follow(self) -> None:
        refreshed = time.monotonic()
        while True:
            if time.monotonic() - refreshed > REFRESH_SECONDS:
                await self._refresh()
                refreshed = time.monotonic()
            batches = self.batches
            if not batches:
                await asyncio.sleep(REFRESH_SECONDS)
                continue
            block = BLOCK_MS if len(batches) == 1 and len(batches[0]) == 1 else None
            got = 0
            for batch in batches:
                got += await self._read(batch, ">", block=block)
            if got < MAX_PER_READ // 4:
                # Let a batch gather: each costs round trips and a transaction however small,
                # and this runs in a worker that also serves sockets (bench/REPORT.md).
                await asyncio.sleep(GATHER_SECONDS)

    async def _read(self, batch: list[list[str]], after: str, block: int | None) -> int:
        """One XREADGROUP per one-slot group, archived and acknowledged; how many entries
        they brought."""
        # At most about MAX_PER_READ entries in one read (and one transaction).
        count = max(10, min(BATCH, MAX_PER_READ // sum(len(group) for group in batch)))
        try:
            if len(batch) == 1:
                streams = dict.fromkeys(batch[0], after)
                replies = await self.redis.xreadgroup(
                    self.group, CONSUMER, streams, count=count, block=block
                )
            else:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for group in batch:
                        pipe.xreadgroup(
                            self.group, CONSUMER, dict.fromkeys(group, after), count=count
                        )
                    replies = [reply for got in await pipe.execute() for reply in got or []]
        except ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            self.streams = []  # a stream vanished (Redis lost its data): list them again
            await self._refresh()
            return 0
        read = [(stream, entries) for stream, entries in replies or [] if entries]
        if read:
            await self._archive(read)
        return sum(len(entries) for _, entries in read)

    async def _archive(self, read: list[tuple[str, list[tuple[str, Any]]]]) -> None:
        leaving = [
            (f["person"], f.get("tag", ""))
            for s, got in read
            if s == ERASURES
            for _, f in got
            if f.get("person")
        ]
        new, changed = await self._entries([(s, got) for s, got in read if s != ERASURES])
        await self._check_numbers(new)
        await self._write(self.archive.store, new, changed)
        for person, tag in leaving:  # after the batch: what it just added of theirs goes too
            await self._write(self.archive.erase_person, person, tag, self.tag_of)
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, entries in read:
                pipe.xack(stream, self.group, *(entry_id for entry_id, _ in entries))
            await pipe.execute()

    async def _entries(
        self, read: list[tuple[str, list[tuple[str, Any]]]]
    ) -> tuple[list[Entry], list[Entry]]:
        """New messages with their texts, and the current versions of changed ones."""
        plan: list[tuple[str, list[tuple[str, dict[str, str]]], list[str]]] = []
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, entries in read:
                slug = slug_of(stream)
                # A pending entry trimmed meanwhile comes back without fields: nothing to keep.
                messages = [(i, f) for i, f in entries if f and history.is_message(f)]
                touched = sorted(
                    {
                        f["of"]
                        for _, f in entries
                        if f and not history.is_message(f) and history.parse_id(f.get("of"))
                    }
                )
                plan.append((slug, messages, touched))
                if messages:
                    versions.between(pipe, slug, messages[0][0], messages[-1][0])
                for entry_id in touched:
                    versions.between(pipe, slug, entry_id, entry_id)
            answers = iter(await pipe.execute())
        new: list[Entry] = []
        changed: list[Entry] = []
        for slug, messages, touched in plan:
            stored = versions.texts(next(answers)) if messages else {}
            for entry_id, fields in messages:
                # Not the address older messages carry, once a person id says who it was.
                dropped = ("body", "cid", "author") if fields.get("pid") else ("body", "cid")
                kept = {k: v for k, v in fields.items() if k not in dropped}
                state = stored.get(entry_id) or versions.first_text(fields.get("body", ""))
                new.append(Entry(slug, entry_id, kept, state))
            for entry_id in touched:
                now = versions.texts(next(answers)).get(entry_id)
                if now is not None:
                    changed.append(Entry(slug, entry_id, {}, now))
        return new, changed

    async def _check_numbers(self, new: list[Entry]) -> None:
        """Log and record a hole in a room's message numbers: messages trimmed unread."""
        for entry in new:
            number = int(entry.fields.get("n") or 0)
            if not number:
                continue  # from before messages were numbered
            last = self.last_number.get(entry.room)
            if last is None:
                last = await self._write(self.archive.last_number, entry.room)
            if number > last + 1:
                missing = number - last - 1
                log.warning(
                    "archive: %d message(s) of room %s were trimmed from Redis before this "
                    "host's archive read them (after message %d)",
                    missing,
                    entry.room,
                    last,
                )
                await self._write(
                    self.archive.note_gap, entry.room, last, missing, int(time.time() * 1000)
                )
            # Lower numbers are replays, or a room whose Redis data was lost starting over.
            self.last_number[entry.room] = max(number, last)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def init_app(app: Quart) -> None:
    path = Path(app.config["ARCHIVE_PATH"] or Path(app.instance_path) / "archive.sqlite3")
    app.extensions["archive"] = Archive(path)
    app.extensions["archive_readers"] = ThreadPoolExecutor(2, thread_name_prefix="archive-reader")
    group = app.config["ARCHIVE_GROUP"] or os.uname().nodename

    async def archive_while_holding_the_lock() -> None:
        while True:
            with host_lock(path.with_name(path.name + ".lock")) as mine:
                if mine:
                    log.info("archive: this worker archives to %s as group %s", path, group)
                    archiver = Archiver(
                        store.redis(app), app.extensions["archive"], group, store.secret(app)
                    )
                    try:
                        await archiver.run()
                    except ARCHIVE_DOWN as error:  # a full disk, a damaged file: say so, retry
                        log.error("archive: cannot write to %s: %s", path, error)
                        await asyncio.sleep(WRITE_RETRY_SECONDS)
                    finally:
                        # The lock is let go only once a write under way has ended; waiting
                        # for it must not stop the event loop (a shutdown has more to do).
                        await asyncio.shield(asyncio.to_thread(archiver.writer.shutdown))
            await asyncio.sleep(LOCK_RETRY_SECONDS)

    tasks.run_while_serving(app, archive_while_holding_the_lock)
