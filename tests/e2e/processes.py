"""Stopping the app server the hard way."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.servers import AppServer


def crash(server: AppServer) -> None:
    """SIGKILL the hypercorn worker: its sockets drop without a close frame (1006)."""
    if server.process is None or server.process.poll() is not None:
        return
    pid = server.process.pid
    children = [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]
    assert children, "hypercorn runs its app in worker processes"
    for child in children:
        os.kill(child, signal.SIGKILL)
    server.process.wait(10)  # the parent stops once its worker died
