"""Times as a viewer reads them: in their time zone, with their language's formats.

`HH:mm` for today, the date for older days (12月1日 in Chinese, Dec 1 in English), and the
full date, time and zone on hover. A fragment rendered for everyone (no variant in force)
gets markers instead, which `fill_markers` turns into one viewer's text later.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from babel.dates import format_datetime, format_skeleton, format_time
from markupsafe import escape

from chat import i18n, labels
from chat.i18n import Variant

MARKER = re.compile("\x01([sfw])([0-9a-z]{1,16})\x01")


def _at(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, UTC)


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def short(moment: datetime) -> str:
    """`HH:mm` if it is today where the viewer is, else the date."""
    variant = i18n.current()
    if variant is None:
        return f"\x01s{_millis(moment)}\x01"
    return _short(_millis(moment) // 1000, _today(variant.time_zone), variant)


def full(moment: datetime) -> str:
    """The whole date, time and zone, for the hover title."""
    variant = i18n.current()
    if variant is None:
        return f"\x01f{_millis(moment)}\x01"
    return _full(_millis(moment) // 1000, variant)


def _today(time_zone: str) -> str:
    return datetime.now(ZoneInfo(time_zone)).date().isoformat()


# Cached per second: the messages of one busy second share their texts.
@functools.lru_cache(maxsize=4096)
def _short(second: int, today: str, variant: Variant) -> str:
    zone = ZoneInfo(variant.time_zone)
    local = _at(second * 1000).astimezone(zone)
    if local.date().isoformat() == today:
        return str(format_time(local, "HH:mm", locale=variant.locale))
    skeleton = "MMMd" if local.year == int(today[:4]) else "yMMMd"
    return str(format_skeleton(skeleton, local, locale=variant.locale))


@functools.lru_cache(maxsize=4096)
def _full(second: int, variant: Variant) -> str:
    zone = ZoneInfo(variant.time_zone)
    return str(format_datetime(_at(second * 1000), "full", tzinfo=zone, locale=variant.locale))


def fill_markers(html: str, variant: Variant) -> str:
    """One viewer's copy of a fragment rendered for everyone."""
    today = _today(variant.time_zone)

    def text(match: re.Match[str]) -> str:
        if match.group(1) == "w":  # a word (chat/labels.py), filled in the same pass
            return labels.fill(match.group(2), variant)
        second = int(match.group(2)) // 1000
        if match.group(1) == "s":
            return str(escape(_short(second, today, variant)))
        return str(escape(_full(second, variant)))

    return MARKER.sub(text, html)
