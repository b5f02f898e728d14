"""What a browser says it is: kept short and clean at sign-in, named for people when shown.

The User-Agent header is the client's to write: it is cut to MAX_CHARS and stripped of
control, format (bidi) and other invisible characters before it is stored, and parsed only
by ua-parser's maintained rules, never by a pattern of ours.
"""

from __future__ import annotations

import asyncio
import functools
import unicodedata

from ua_parser import parse

from chat import i18n

MAX_CHARS = 300
_INVISIBLE = ("C", "Z")  # control, format, surrogate, private use; separators other than space


def clean(raw: str | None) -> str:
    """The header as stored: printable characters only, at most MAX_CHARS."""
    text = "".join(
        char
        for char in (raw or "")[: MAX_CHARS * 4]
        if char == " " or not unicodedata.category(char).startswith(_INVISIBLE)
    )
    return " ".join(text.split())[:MAX_CHARS]


@functools.lru_cache(maxsize=1024)
def _describe(user_agent: str) -> tuple[str, str]:
    found = parse(user_agent)
    browser = found.user_agent.family if found.user_agent else ""
    if browser and found.user_agent and found.user_agent.major:
        browser = f"{browser} {found.user_agent.major}"
    system = found.os.family if found.os else ""
    if system and found.os and found.os.major:
        system = f"{system} {found.os.major}"
    return ("" if browser == "Other" else browser), ("" if system.startswith("Other") else system)


async def describe(user_agent: str) -> tuple[str, str]:
    """(browser, operating system), each "" when unknown. The first call compiles the rules
    (about a third of a second): in a thread, off the event loop."""
    return await asyncio.to_thread(_describe, clean(user_agent))


def device_name(browser: str, system: str) -> str:
    """ "Firefox 133 on Windows 10", in the language in force."""
    if browser and system:
        return i18n.gettext("%(browser)s on %(system)s") % {"browser": browser, "system": system}
    return browser or system or i18n.gettext("Unknown browser")
