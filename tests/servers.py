"""The app as a real server process (hypercorn, the production entry) for browser and fault tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from chat.embedded_redis import free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent


class AppServer:
    """`hypercorn --config hypercorn.toml "app:create_app()"` on a free port."""

    def __init__(
        self, settings: dict[str, Any], workers: int = 1, log_path: Path | None = None
    ) -> None:
        self.port = free_port()
        self.settings = settings
        self.workers = workers
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "hypercorn",
            "--config",
            "hypercorn.toml",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "app:create_app()",
        ]

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
        env.update(
            {
                f"CHAT_{k}": str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in self.settings.items()
            }
        )
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
