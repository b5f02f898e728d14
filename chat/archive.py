"""The durable archive: every message of every room, for good, in one SQLite file per host.

Nothing else in the app touches SQLite: the archiver (chat/archiver.py) writes through
`Archive.store`, pages, search and export read through the other methods, so a server
database could replace this module alone. Writes come from one process per host at a time
(chat/archiver.py holds a lock file); readers in every worker use their own connections (WAL).

A row keeps the stream entry's fields and the message's state as chat/versions.py writes it,
so an archived message renders exactly like one still in Redis. Its text is indexed twice,
folded (chat/folding.py): by trigrams, for words of three characters or more and any substring
in any script, and by words (unicode61, each Chinese, Japanese or Korean character a word of
its own), for the one- and two-character queries trigrams cannot answer. The indexes hold no
copy of the text (contentless); a deleted message's text leaves the row and both indexes.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chat import folding

# A row's id orders search results newest first: the message's millisecond times SLOTS, plus
# the first slot free in that millisecond (rooms are interleaved; a room's order is ms, seq).
SLOTS = 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
  id INTEGER PRIMARY KEY,
  room TEXT NOT NULL,
  ms INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  n INTEGER NOT NULL,
  person TEXT NOT NULL,
  who TEXT NOT NULL,
  fields TEXT NOT NULL,
  state TEXT NOT NULL,
  version INTEGER NOT NULL,
  UNIQUE (room, ms, seq)
);
CREATE INDEX IF NOT EXISTS messages_by_author ON messages (who, id);
CREATE VIRTUAL TABLE IF NOT EXISTS grams USING fts5 (text, content='', tokenize='trigram');
CREATE VIRTUAL TABLE IF NOT EXISTS words
  USING fts5 (text, content='', tokenize='unicode61 remove_diacritics 2');
CREATE TABLE IF NOT EXISTS gaps (
  room TEXT NOT NULL,
  after_n INTEGER NOT NULL,
  missing INTEGER NOT NULL,
  noticed_ms INTEGER NOT NULL,
  PRIMARY KEY (room, after_n)
);
"""


@dataclass(frozen=True)
class Entry:
    """One message as the archive keeps it."""

    room: str
    id: str  # the stream id, "<ms>-<seq>"
    fields: dict[str, str]  # the stream entry, without any text
    state: str  # chat/versions.py's JSON: text, edits, deletion, reactions

    @property
    def ms(self) -> int:
        return int(self.id.partition("-")[0])

    @property
    def seq(self) -> int:
        return int(self.id.partition("-")[2])

    @property
    def version(self) -> int:
        return int(json.loads(self.state).get("v", 0))


@dataclass(frozen=True)
class Hit:
    row: int  # the cursor for "More results"
    entry: Entry


@dataclass(frozen=True)
class Found:
    hits: list[Hit]
    stopped_at: int | None  # the time budget ran out here: look further back from this row


# How long one page of search may spend checking candidates against its filters.
SEARCH_BUDGET_SECONDS = 0.025


def _body(state: str) -> str:
    parsed = json.loads(state)
    return "" if parsed.get("d") else str(parsed.get("b", ""))


def _without(state: dict[str, Any], person: str, theirs: bool) -> dict[str, Any] | None:
    """A message's state with the person gone: deleted if theirs, else without their
    reactions; None when there is nothing to change."""
    if theirs:
        return None if state.get("d") else {"d": 1}
    reactions = state.get("r") or {}
    kept = {e: [w for w in whom if w[0] != person] for e, whom in reactions.items()}
    kept = {e: whom for e, whom in kept.items() if whom}
    if kept == reactions:
        return None
    now = {k: v for k, v in state.items() if k != "r"}
    return {**now, "r": kept} if kept else now


class Archive:
    """One archive file; each thread that uses it gets its own connection."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._set_up = False
        self._setting_up = threading.Lock()

    def connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            self._set_up_once()
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at each checkpoint, never torn
            self._local.db = db
        return db

    def _set_up_once(self) -> None:
        """WAL mode and the tables, once per process. Switching to WAL takes the file for
        itself without waiting for others (no busy timeout), so a few tries may be needed
        when several workers start at once."""
        with self._setting_up:
            if self._set_up:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for attempt in range(100):
                try:
                    with contextlib.closing(
                        sqlite3.connect(self.path, timeout=30, isolation_level=None)
                    ) as db:
                        db.execute("PRAGMA journal_mode=WAL")
                        db.executescript(_SCHEMA)
                    break
                except sqlite3.OperationalError as error:
                    if "locked" not in str(error) or attempt == 99:
                        raise
                    time.sleep(0.05)
            self._set_up = True

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # Writing: the archiver only.

    def store(self, entries: Sequence[Entry], changed: Sequence[Entry]) -> int:
        """Add new messages and apply newer versions of archived ones, in one transaction.
        A message already archived is not written again. Returns how many were added."""
        db = self.connection()
        added = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            for entry in entries:
                added += self._add(db, entry)
            for entry in changed:
                self._update(db, entry)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return added

    def _add(self, db: sqlite3.Connection, entry: Entry) -> int:
        known = db.execute(
            "SELECT id FROM messages WHERE room = ? AND ms = ? AND seq = ?",
            (entry.room, entry.ms, entry.seq),
        ).fetchone()
        if known:
            self._update(db, entry)
            return 0
        base = entry.ms * SLOTS
        (top,) = db.execute(
            "SELECT max(id) FROM messages WHERE id >= ? AND id < ?", (base, base + SLOTS)
        ).fetchone()
        row = base if top is None else top + 1
        while db.execute("SELECT 1 FROM messages WHERE id = ?", (row,)).fetchone():
            row += 1  # more than SLOTS messages in one millisecond: borrow the next one's
        state = json.loads(entry.state)
        db.execute(
            "INSERT INTO messages (id, room, ms, seq, n, person, who, fields, state, version)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row,
                entry.room,
                entry.ms,
                entry.seq,
                int(entry.fields.get("n") or 0),
                entry.fields.get("pid", ""),
                folding.fold(entry.fields.get("name", "")),
                json.dumps(entry.fields, ensure_ascii=False),
                entry.state,
                int(state.get("v", 0)),
            ),
        )
        self._index(db, row, "" if state.get("d") else str(state.get("b", "")))
        return 1

    def _update(self, db: sqlite3.Connection, entry: Entry) -> None:
        found = db.execute(
            "SELECT id, state, version FROM messages WHERE room = ? AND ms = ? AND seq = ?",
            (entry.room, entry.ms, entry.seq),
        ).fetchone()
        if found is None or found[2] >= entry.version:
            return  # not archived (trimmed before it was read), or this is no newer
        row, old_state, _ = found
        self._unindex(db, row, _body(old_state))
        db.execute(
            "UPDATE messages SET state = ?, version = ? WHERE id = ?",
            (entry.state, entry.version, row),
        )
        self._index(db, row, _body(entry.state))

    def _index(self, db: sqlite3.Connection, row: int, body: str) -> None:
        if body:
            folded = folding.fold(body)
            db.execute("INSERT INTO grams (rowid, text) VALUES (?, ?)", (row, folded))
            db.execute(
                "INSERT INTO words (rowid, text) VALUES (?, ?)",
                (row, folding.spaced_folded(folded)),
            )

    def _unindex(self, db: sqlite3.Connection, row: int, body: str) -> None:
        # Contentless tables forget a row only when told the exact text it was indexed with.
        if body:
            folded = folding.fold(body)
            db.execute(
                "INSERT INTO grams (grams, rowid, text) VALUES ('delete', ?, ?)", (row, folded)
            )
            db.execute(
                "INSERT INTO words (words, rowid, text) VALUES ('delete', ?, ?)",
                (row, folding.spaced_folded(folded)),
            )

    def erase_person(
        self, person: str, tag: str = "", tag_of: Callable[[str], str] | None = None
    ) -> int:
        """A deleted account: each of its messages becomes "Message deleted" (its text leaves
        the row and both indexes, its author's name the author index) and its reactions are
        taken back, as newer versions. Reads every row once (a rare event); how many changed."""
        db = self.connection()
        changed = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute(
                "SELECT id, person, fields, state, version FROM messages"
                " WHERE person = ? OR instr(state, ?) > 0 OR (person = '' AND ?)",
                (person, json.dumps(person), bool(tag and tag_of)),
            ).fetchall()
            for row, author, fields, state, version in rows:
                if not author and tag and tag_of:  # from before person ids: by its address
                    address = str(json.loads(fields).get("author", ""))
                    if address and tag_of(address) == tag:
                        author = person
                if author == person and '"author"' in fields:  # an address kept before 2026-12
                    kept = {k: v for k, v in json.loads(fields).items() if k != "author"}
                    db.execute(
                        "UPDATE messages SET fields = ?, who = '' WHERE id = ?",
                        (json.dumps(kept, ensure_ascii=False), row),
                    )
                now = _without(json.loads(state), person, author == person)
                if now is None:
                    continue
                now["v"] = version + 1
                text = json.dumps(now, ensure_ascii=False)
                self._unindex(db, row, _body(state))
                db.execute(
                    "UPDATE messages SET state = ?, version = ? WHERE id = ?",
                    (text, version + 1, row),
                )
                self._index(db, row, _body(text))
                changed += 1
            # Their name leaves the author index, on rows deleted before too.
            db.execute("UPDATE messages SET who = '' WHERE person = ?", (person,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return changed

    def note_gap(self, room: str, after_n: int, missing: int, now_ms: int) -> None:
        self.connection().execute(
            "INSERT OR IGNORE INTO gaps (room, after_n, missing, noticed_ms) VALUES (?, ?, ?, ?)",
            (room, after_n, missing, now_ms),
        )

    def last_number(self, room: str) -> int:
        """The room's latest message number archived (0: none)."""
        # The newest message's number (no index covers n; this one reads one row): after a
        # room's numbers restarted (Redis lost its data) it is the right base for gaps too.
        found = (
            self.connection()
            .execute(
                "SELECT n FROM messages WHERE room = ? ORDER BY ms DESC, seq DESC LIMIT 1", (room,)
            )
            .fetchone()
        )
        return int(found[0]) if found else 0

    # Reading: any worker.

    def before(self, room: str, entry_id: tuple[int, int], limit: int) -> list[Entry]:
        """Up to `limit` messages before this id, newest first."""
        rows = self.connection().execute(
            "SELECT ms, seq, fields, state FROM messages WHERE room = ? AND (ms, seq) < (?, ?)"
            " ORDER BY ms DESC, seq DESC LIMIT ?",
            (room, *entry_id, limit),
        )
        return [_entry(room, *row) for row in rows]

    def after(self, room: str, entry_id: tuple[int, int], limit: int) -> list[Entry]:
        """Up to `limit` messages after this id, oldest first."""
        rows = self.connection().execute(
            "SELECT ms, seq, fields, state FROM messages WHERE room = ? AND (ms, seq) > (?, ?)"
            " ORDER BY ms, seq LIMIT ?",
            (room, *entry_id, limit),
        )
        return [_entry(room, *row) for row in rows]

    def everything(self, room: str, batch: int = 1000) -> Iterator[Entry]:
        """The room's messages in order, read a batch at a time (an export)."""
        last = (-1, -1)
        while True:
            found = self.after(room, last, batch)
            yield from found
            if len(found) < batch:
                return
            last = (found[-1].ms, found[-1].seq)

    def search(
        self,
        rooms: Sequence[str],
        long_terms: Sequence[str],
        short_terms: Sequence[str],
        author: str | None,
        before_row: int | None,
        limit: int,
        budget_seconds: float = SEARCH_BUDGET_SECONDS,
    ) -> Found:
        """Messages in these rooms holding every term, newest first, below `before_row`.

        `long_terms` are folded substrings of three characters or more (trigram index),
        `short_terms` folded words of one or two characters (word index, spaced). One index
        finds the candidates newest first; rooms, author and, next to long terms, short terms
        are checked here, row by row, for at most `budget_seconds`: a filter that lets almost
        nothing through (a room without the word, a misspelt name) then ends the page early
        with a cursor to look further back, instead of reading every match (bench/REPORT.md).
        """
        if not rooms or not (long_terms or short_terms):
            return Found([], None)
        index = "grams" if long_terms else "words"
        terms = long_terms or short_terms
        checked_words = [_word_pattern(term) for term in short_terms] if long_terms else []
        args: list[object] = [" AND ".join(_phrase(term) for term in terms)]
        below = ""
        if before_row is not None:
            below = f" AND {index}.rowid < ?"
            args.append(before_row)
        # Only fixed fragments and "?" placeholders are joined here; every value is a parameter.
        sql = (
            f"SELECT m.id, m.room, m.who, m.ms, m.seq, m.fields, m.state FROM {index}"  # noqa: S608
            f" JOIN messages m ON m.id = {index}.rowid WHERE {index} MATCH ?{below}"
            f" ORDER BY {index}.rowid DESC"
        )
        wanted = set(rooms)
        deadline = time.monotonic() + budget_seconds
        hits: list[Hit] = []
        cursor = self.connection().execute(sql, args)
        size = 32  # most pages fill from the first few candidates
        while batch := cursor.fetchmany(size):
            for row, room, who, ms, seq, fields, state in batch:
                if room not in wanted or (author is not None and not _by(who, author)):
                    continue
                if checked_words and not _has_words(state, checked_words):
                    continue
                hits.append(Hit(row, _entry(room, ms, seq, fields, state)))
                if len(hits) == limit:
                    cursor.close()
                    return Found(hits, None)
            if len(batch) == size and time.monotonic() > deadline:  # (a short batch: all read)
                cursor.close()
                return Found(hits, batch[-1][0])
            size = 256
        return Found(hits, None)

    def gaps(self) -> tuple[int, int]:
        """How many gaps were noticed, and how many messages they lost."""
        count, missing = (
            self.connection()
            .execute("SELECT count(*), coalesce(sum(missing), 0) FROM gaps")
            .fetchone()
        )
        return int(count), int(missing)


def _entry(room: str, ms: int, seq: int, fields: str, state: str) -> Entry:
    return Entry(room, f"{ms}-{seq}", json.loads(fields), state)


def _phrase(term: str) -> str:
    """A term as an FTS5 string: whatever it holds is text to find, never query syntax."""
    return '"' + term.replace('"', '""') + '"'


def _by(who: str, author: str) -> bool:
    """Is `who` (a folded name) this author: the same, or starting with it as whole words?"""
    return who == author or who.startswith(author + " ")


def _word_pattern(term: str) -> re.Pattern[str]:
    """A spaced word-index term as a regular expression over folded text (whole words)."""
    words = term.split()
    body = r"[\W_]*".join(re.escape(word) for word in words)
    # Each CJK character is a word of its own: no boundary needed around one.
    start = "" if folding.only_cjk(words[0][0]) else r"(?<![^\W_])"
    end = "" if folding.only_cjk(words[-1][-1]) else r"(?![^\W_])"
    return re.compile(start + body + end)


def _has_words(state: str, patterns: list[re.Pattern[str]]) -> bool:
    folded = folding.fold(_body(state))
    return all(pattern.search(folded) for pattern in patterns)
