"""Stopping the app server the hard way."""

from __future__ import annotations

import contextlib
import os
import signal

from tests.servers import AppServer, descendants_of


def crash(server: AppServer) -> None:
    """SIGKILL the supervisor, then its workers: sockets drop without a close frame (1006)."""
    if server.process is None or server.process.poll() is not None:
        return
    # Frozen first, so that it cannot start new workers, and killed last: its death would
    # send the workers SIGTERM (a graceful 1012 close) if they were still alive.
    server.process.send_signal(signal.SIGSTOP)
    for pid in descendants_of(server.process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.process.kill()
    server.process.wait(10)
