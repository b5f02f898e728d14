"""Serve the app in supervised hypercorn worker processes: `python -m chat.serve`.

hypercorn's own multi-worker mode stops the whole server when one worker dies, and its
graceful shutdown closes websockets with 1011 only after `graceful_timeout`. This supervisor
binds the listening socket once and shares it with CHAT_WORKERS spawned workers, like hypercorn
does, and adds two things:

- a worker that dies (SIGKILL, the OOM killer, a crash) is replaced; the other workers keep
  their sockets, and the dead one's browsers reconnect to them. A worker that ends before it
  ever served (a bad setting, a missing module) stops the server with exit 1 instead;
- SIGTERM or SIGINT (or SIGTERM to a single worker, to restart just that one) makes each worker
  refuse new sockets, close its open ones with 1012 "service restart" so hx-ws reconnects and
  backfills, then let hypercorn finish its requests within `graceful_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import sys
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from pathlib import Path
from types import FrameType
from typing import Any

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets
from hypercorn.utils import wrap_app
from quart import Quart

from chat import logs
from chat.embedded_redis import die_with_parent
from chat.settings import ConfigError, apply_defaults, validate

log = logging.getLogger("chat.serve")

ROOT = Path(__file__).resolve().parent.parent
# After graceful_timeout, workers still running get this long before SIGKILL.
KILL_AFTER_SECONDS = 5.0


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
    stop = context.Event()
    stopping = False

    def stop_all(reason: str) -> None:
        nonlocal stopping
        if not stopping:
            log.info("%s: stopping the workers", reason)
        stopping = True
        stop.set()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_all(signal.Signals(signum).name)

    # Ignored while spawning so the workers inherit it: Ctrl-C reaches the whole process
    # group, and only this process should act on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    running: dict[BaseProcess, Event] = {}  # worker -> set once it serves
    for _ in range(workers):
        start_worker(context, config, sockets, stop, running)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    exit_code = 0
    while running and not stopping:
        for process in ended(running, timeout=0.5):
            if not running.pop(process).is_set():  # it never served: a restart would fail too
                exit_code = 1
                stop_all(f"worker {process.pid} failed to start ({describe(process.exitcode)})")
                break
            log.warning(
                "worker %s ended (%s); starting a new one", process.pid, describe(process.exitcode)
            )
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            start_worker(context, config, sockets, stop, running)
            signal.signal(signal.SIGINT, on_signal)

    deadline = time.monotonic() + config.graceful_timeout + KILL_AFTER_SECONDS
    for process in running:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            log.warning("worker %s still running after the grace period: killed", process.pid)
            process.kill()
            process.join()
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
        sock.close()
    return exit_code


def start_worker(
    context: Any, config: Config, sockets: Sockets, stop: Event, running: dict[BaseProcess, Event]
) -> None:
    ready = context.Event()
    process = context.Process(target=run_worker, args=(config, sockets, stop, ready))
    process.start()
    running[process] = ready


def ended(running: dict[BaseProcess, Event], timeout: float) -> list[BaseProcess]:
    gone = set(wait([process.sentinel for process in running], timeout=timeout))
    finished = [process for process in running if process.sentinel in gone]
    for process in finished:
        process.join()  # its sentinel can close a moment before its exit code can be read
    return finished


def describe(exit_code: int | None) -> str:
    if exit_code is not None and exit_code < 0:
        return f"killed by {signal.Signals(-exit_code).name}"
    return f"exit {exit_code}"


def run_worker(config: Config, sockets: Sockets, stop: Event, ready: Event) -> None:
    from app import create_app  # in the worker: each process builds its own app

    die_with_parent()  # a supervisor killed with SIGKILL leaves no worker holding the port
    app = create_app()
    asyncio.run(serve_worker(app, config, sockets, stop, ready))


async def serve_worker(
    app: Quart, config: Config, sockets: Sockets, stop: Event, ready: Event
) -> None:
    from blueprints import live

    asked = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, asked.set)
    loop.set_exception_handler(ignore_cancelled_connections)

    async def shutdown_trigger() -> None:
        ready.set()  # hypercorn calls this once the app has started and the sockets listen
        while not (stop.is_set() or asked.is_set()):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asked.wait(), timeout=0.1)
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
