"""One line per event on stderr, as text or JSON (CHAT_LOG_FORMAT)."""

from __future__ import annotations

import json
import logging
import sys

from quart import Quart


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "event": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(log_format: str) -> None:
    logger = logging.getLogger("chat")
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def init_app(app: Quart) -> None:
    """With JSON logs, switch hypercorn's access and error logs to JSON too (one format).

    hypercorn creates its log handlers only after the app has started, so this happens on the
    first request or websocket.
    """
    if app.config["LOG_FORMAT"] != "json":
        return
    done = False

    async def format_server_logs() -> None:
        nonlocal done
        if done:
            return
        done = True
        for name in ("hypercorn.access", "hypercorn.error"):
            for handler in logging.getLogger(name).handlers:
                handler.setFormatter(JsonFormatter())

    app.before_request(format_server_logs)
    app.before_websocket(format_server_logs)
