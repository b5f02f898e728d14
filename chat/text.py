"""Message text: cleaning what people send, and showing it safely with links."""

from __future__ import annotations

import re

from markupsafe import Markup, escape

# http(s) URLs up to whitespace or a character that cannot end one in prose.
_URL = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:!?)\]}]", re.IGNORECASE)
# Control characters other than tab and newline never belong in a chat message.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_body(raw: str) -> str:
    """Normalise newlines, drop control characters, trim the ends."""
    return _CONTROL.sub("", raw.replace("\r\n", "\n").replace("\r", "\n")).strip()


def linkify(text: str) -> Markup:
    """Escape everything; turn http(s) URLs into links that cannot run script."""
    parts: list[str] = []
    position = 0
    for match in _URL.finditer(text):
        parts.append(str(escape(text[position : match.start()])))
        url = escape(match.group(0))
        parts.append(
            f'<a href="{url}" rel="nofollow noopener noreferrer" target="_blank">{url}</a>'
        )
        position = match.end()
    parts.append(str(escape(text[position:])))
    return Markup("".join(parts))  # noqa: S704 - every piece above is escaped


def initials(name: str) -> str:
    letters = [part[0] for part in re.split(r"[._\-+\s]+", name) if part]
    return ("".join(letters[:2]) or "?").upper()
