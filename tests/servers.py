"""The app as a real server process (the production entry) for browser and fault tests."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from chat.embedded_redis import free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent


class AppServer:
    """`python -m chat.serve` (hypercorn workers, `hypercorn.toml`) on a free port."""

    def __init__(
        self, settings: dict[str, Any], workers: int = 1, log_path: Path | None = None
    ) -> None:
        self.port = free_port()
        self.settings = settings
        self.workers = workers
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        # Its own archive unless the test names one (a test shares one Redis between servers).
        self.archive_path = Path(
            settings.get("ARCHIVE_PATH") or Path(tempfile.mkdtemp(prefix="archive-")) / "a.sqlite3"
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "chat.serve"]

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
        env.update({"CHAT_BIND": f"127.0.0.1:{self.port}", "CHAT_WORKERS": str(self.workers)})
        env.update(
            {
                f"CHAT_{k}": str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in self.settings.items()
            }
        )
        env["CHAT_ARCHIVE_PATH"] = str(self.archive_path)
        env.setdefault("CHAT_ARCHIVE_GROUP", f"server-{self.archive_path.parent.name}")
        return env

    def launch(self) -> None:
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # the child has its own copy

    def start(self, timeout: float = 20) -> None:
        self.launch()
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app server exited with {self.process.returncode}")
            if self.is_ready():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"app server not ready within {timeout} s")

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self, timeout: float = 15) -> int | None:
        if self.process is None:
            return None
        return stop_process(self.process, timeout)

    def forget_history(self) -> None:
        """Empty the server's archive (tests that share a server flush Redis between them;
        the archive would otherwise serve one test's messages below the next one's)."""
        for _ in range(2):  # again after a batch read before the flush could have landed
            if self.archive_path.exists():
                with (
                    contextlib.closing(sqlite3.connect(self.archive_path, timeout=10)) as db,
                    contextlib.suppress(sqlite3.OperationalError),  # no tables yet
                ):
                    db.execute("DELETE FROM messages")
                    db.execute("INSERT INTO grams (grams) VALUES ('delete-all')")
                    db.execute("INSERT INTO words (words) VALUES ('delete-all')")
                    db.execute("DELETE FROM gaps")
                    db.commit()
            time.sleep(0.2)

    def worker_pids(self) -> list[int]:
        """The supervisor's worker processes (not multiprocessing's resource tracker)."""
        assert self.process is not None
        return [pid for pid in children_of(self.process.pid) if "spawn_main" in command_line(pid)]


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def connection_owners(pids: list[int]) -> dict[int, int]:
    """Client port -> pid of the process holding that TCP connection's server end."""
    inode_owner = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inode_owner[int(target[8:-1])] = pid
    owners = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            owner = inode_owner.get(int(fields[9]))
            if owner is not None:
                owners[int(fields[2].rsplit(":", 1)[1], 16)] = owner
    return owners


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def descendants_of(pid: int) -> list[int]:
    result = []
    for child in children_of(pid):
        result += [child, *descendants_of(child)]
    return result
