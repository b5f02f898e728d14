"""Real parts for tests: a Redis server process and an aiosmtpd SMTP server."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from chat.embedded_redis import free_port

# Tests sign in many people from one address: the sign-in and room limits are raised (only
# through CHAT_* settings); the tests of those limits set their own.
GENEROUS_LIMITS: dict[str, Any] = {
    "CODE_SENDS_PER_IP_PER_HOUR": 100_000,
    "CODE_SENDS_PER_HOUR": 1_000_000,
    "NEW_ADDRESS_FAILURES_PER_HOUR": 100_000,
    "CODE_SENDS_PER_EMAIL_PER_HOUR": 100_000,
    "CODE_SENDS_PER_EMAIL_PER_NETWORK_PER_HOUR": 50_000,
    "CODE_CHECKS_PER_IP_PER_HOUR": 100_000,
    "CODE_CHECKS_PER_MINUTE": 100_000,
    "CODE_RESEND_SECONDS": 1,
    "ROOMS_PER_PERSON_PER_HOUR": 1000,
    "SEARCHES_PER_MINUTE": 100_000,
    "EXPORTS_PER_HOUR": 100_000,
    # Tests that look for a socket on a given worker open many for one session.
    "WS_MAX_SOCKETS_PER_SESSION": 1000,
    "WS_HANDSHAKES_PER_MINUTE": 10_000,
    # Every app and server of a test run shares one Redis: only the mention-email tests run
    # the email job (they set their own delay), so no other server's job takes theirs.
    "MENTION_EMAIL_DELAY_SECONDS": 0,
}

CODE_IN_SUBJECT = re.compile(r"^(\d{8}) ")  # first in the subject, in every language


@dataclass
class Inbox:
    """What the SMTP server received, newest last."""

    messages: list[EmailMessage] = field(default_factory=list)
    # "New sign-in" notices come in the background, after the sign-in that caused them: kept
    # apart, so tests counting the emails an action sent are not raced by them.
    notices: list[EmailMessage] = field(default_factory=list)
    condition: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.condition:
            if message["X-Chat-Mail"] == "sign-in-notice":
                self.notices.append(message)  # type: ignore[arg-type]
            else:
                self.messages.append(message)  # type: ignore[arg-type]
            self.condition.notify_all()
        return "250 OK"

    def notices_to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.notices if m["To"] == address]

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]

    async def wait_for_code(self, address: str, after: int = 0, timeout: float = 10) -> str:
        """The code from the (after+1)-th email to `address`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            mails = self.to(address)
            if len(mails) > after:
                match = CODE_IN_SUBJECT.match(str(mails[after]["Subject"]))
                assert match, mails[after]["Subject"]
                return match.group(1)
            await asyncio.sleep(0.02)
        raise AssertionError(f"no email to {address} within {timeout} s")


class SmtpServer:
    """aiosmtpd on a free port; like most mail servers today it speaks SMTPUTF8, unless told
    not to (for the test of the clear error)."""

    def __init__(self, handler: Any = None, smtputf8: bool = True) -> None:
        self.inbox = handler if handler is not None else Inbox()
        self.port = free_port()
        self.controller = Controller(
            self.inbox, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=smtputf8
        )

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


def stored_messages(redis: Any, slug: str = "general") -> list[dict[str, str]]:
    """Each message of a room as stored: its stream fields, its id, and its text as it is now
    (the text lives in the room's version set, chat/versions.py)."""
    texts: dict[str, dict[str, Any]] = {}
    for member in redis.zrange(f"{{r:{slug}}}:versions", 0, -1):
        pad, _, raw = member.partition("\x1f")
        millis, _, seq = pad.partition("-")
        texts[f"{int(millis)}-{int(seq)}"] = json.loads(raw)
    found = []
    for entry_id, fields in redis.xrange(f"{{r:{slug}}}:stream"):
        if "k" in fields:  # a change event
            continue
        state = texts.get(entry_id, {})
        body = "" if state.get("d") else str(state.get("b", fields.get("body", "")))
        found.append({**fields, "id": entry_id, "body": body})
    return found


def stored_bodies(redis: Any, slug: str = "general") -> list[str]:
    return [message["body"] for message in stored_messages(redis, slug)]


@contextlib.contextmanager
def chat_log(caplog: Any, name: str) -> Iterator[Any]:
    """What one of the app's loggers says (the "chat" logger does not propagate to the root)."""
    logger = logging.getLogger(name)
    logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
