"""Serve the app in supervised hypercorn worker processes: `python -m chat.serve`.

hypercorn's own multi-worker mode stops the whole server when one worker dies, and its
graceful shutdown closes websockets with 1011 only after `graceful_timeout`. This supervisor
binds the listening socket once and shares it with CHAT_WORKERS spawned workers, like hypercorn
does, and adds two things:

- a worker that dies (SIGKILL, the OOM killer, a crash) is replaced; the other workers keep
  their sockets, and the dead one's browsers reconnect to them. A worker that fails by itself
  before it ever served (a bad setting, a missing module) stops the server with exit 1;
- SIGTERM or SIGINT to the supervisor is passed on to the workers as SIGTERM (SIGTERM to a
  single worker restarts just that one): each worker refuses new sockets, closes its open ones
  with 1012 "service restart" so hx-ws reconnects and backfills, and lets hypercorn finish
  within `graceful_timeout`; a worker still running 2 s after that is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

import uvloop
from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets
from hypercorn.utils import wrap_app
from quart import Quart

from chat import logs
from chat.embedded_redis import die_with_parent
from chat.settings import ConfigError, apply_defaults, validate

log = logging.getLogger("chat.serve")

ROOT = Path(__file__).resolve().parent.parent
# After graceful_timeout, workers still running get this long before SIGKILL (the whole stop
# stays within the 10 s that container runtimes wait before their own SIGKILL).
KILL_AFTER_SECONDS = 2.0


def load_settings(instance_path: str) -> dict[str, Any]:
    """Every CHAT_* setting, checked once before anything starts (workers repeat it)."""
    settings = Quart(__name__).config
    settings.from_prefixed_env("CHAT")
    apply_defaults(settings)
    validate(settings, instance_path)
    return dict(settings)


def hypercorn_config(bind: str) -> Config:
    config = Config.from_toml(str(ROOT / "hypercorn.toml"))
    config.bind = [bind]
    return config


def supervise(config: Config, workers: int) -> int:
    """Run `workers` processes until SIGTERM/SIGINT; the exit code is non-zero on failure."""
    try:
        sockets = config.create_sockets()
    except OSError as error:
        log.error("cannot listen on %s: %s", ", ".join(config.bind), error)
        return 1
    context = multiprocessing.get_context("spawn")
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            log.info("%s: stopping the workers", signal.Signals(signum).name)
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    running: list[Worker] = []
    exit_code = 0
    try:
        for _ in range(workers):
            running.append(Worker.start(context, config, sockets))
        while running and not stopping:
            for worker in ended(running, timeout=0.5):
                running.remove(worker)
                code = worker.process.exitcode
                if not worker.served() and code is not None and code > 0:
                    # It failed on its own before serving (a bad setting, a missing module):
                    # a new one would fail the same way.
                    log.error("worker %s failed to start (exit %s); stopping", worker.pid, code)
                    exit_code, stopping = 1, True
                if stopping:
                    break
                log.warning("worker %s ended (%s); starting a new one", worker.pid, describe(code))
                if not worker.served():
                    time.sleep(1)  # killed while starting: do not spin if that repeats
                running.append(Worker.start(context, config, sockets))
    finally:
        if stop_workers(running, config.graceful_timeout + KILL_AFTER_SECONDS):
            exit_code = 1
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
            sock.close()
    return exit_code


class Worker:
    """One worker process, and the pipe on which it says once that it serves."""

    def __init__(self, process: BaseProcess, ready: Connection) -> None:
        self.process = process
        self.ready = ready
        self._served = False

    @classmethod
    def start(cls, context: SpawnContext, config: Config, sockets: Sockets) -> Worker:
        reader, writer = context.Pipe(duplex=False)
        process = context.Process(target=run_worker, args=(config, sockets, writer, os.getpid()))
        process.start()
        writer.close()
        return cls(process, reader)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def served(self) -> bool:
        if not self._served:
            with contextlib.suppress(EOFError, OSError):
                if self.ready.poll():
                    self._served = self.ready.recv_bytes() == b"ready"
        return self._served


def ended(running: list[Worker], timeout: float) -> list[Worker]:
    gone = set(wait([worker.process.sentinel for worker in running], timeout=timeout))
    finished = [worker for worker in running if worker.process.sentinel in gone]
    for worker in finished:
        worker.process.join()  # its sentinel can close a moment before its exit code is known
    return finished


def stop_workers(running: list[Worker], timeout: float) -> bool:
    """SIGTERM every worker (each closes its sockets with 1012); True if one had to be killed."""
    for worker in running:
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(worker.process.pid, signal.SIGTERM)  # type: ignore[arg-type]
    deadline = time.monotonic() + timeout
    killed = False
    for worker in running:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            log.warning("worker %s still running after the grace period: killed", worker.pid)
            worker.process.kill()
            worker.process.join()
            killed = True
    return killed


def describe(exit_code: int | None) -> str:
    if exit_code is not None and exit_code < 0:
        try:
            return f"killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            return f"killed by signal {-exit_code}"
    return f"exit {exit_code}"


def run_worker(config: Config, sockets: Sockets, ready: Connection, supervisor: int) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the supervisor decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()  # a supervisor killed with SIGKILL leaves no worker holding the port
    if os.getppid() != supervisor:
        return  # it died before the line above took effect
    from app import create_app  # in the worker: each process builds its own app

    app = create_app()
    # uvloop: less CPU per socket write and wake-up than asyncio's own loop (bench/REPORT.md).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve_worker(app, config, sockets, ready))


async def serve_worker(app: Quart, config: Config, sockets: Sockets, ready: Connection) -> None:
    from blueprints import live

    asked = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, asked.set)
    loop.set_exception_handler(ignore_cancelled_connections)

    async def shutdown_trigger() -> None:
        # hypercorn calls this once the app has started and the sockets listen.
        with contextlib.suppress(OSError):
            ready.send_bytes(b"ready")
        await asked.wait()
        await live.close_all(app)

    await worker_serve(
        wrap_app(app, config.wsgi_max_body_size, "asgi"),
        config,
        sockets=sockets,
        shutdown_trigger=shutdown_trigger,
    )


def ignore_cancelled_connections(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # Python 3.11's asyncio.streams logs a traceback for each connection task that the end of
    # the grace period cancels (it calls task.exception() on a cancelled task); that is the
    # intended end of those connections, not an error.
    if isinstance(context.get("exception"), asyncio.CancelledError):
        return
    loop.default_exception_handler(context)


def main() -> None:
    """The production entry (the container's CMD): CHAT_REDIS_URL must point at Redis."""
    from app import instance_dir

    settings = load_settings(str(instance_dir()))
    if not settings["REDIS_URL"]:
        raise ConfigError("REDIS_URL", "is not set; expected redis://host:6379/0")
    logs.configure(settings["LOG_FORMAT"])
    sys.exit(supervise(hypercorn_config(settings["BIND"]), int(settings["WORKERS"])))


if __name__ == "__main__":
    main()
