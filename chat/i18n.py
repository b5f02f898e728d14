"""Languages and time zones: which one a request or socket gets, and the catalogs behind them.

Words live in the templates (Jinja's i18n extension, new-style gettext) and in the catalogs
under translations/, compiled in memory when the app starts, so no build step can leave a
stale .mo behind. The locale and time zone in force are one context variable, set for every
request and socket; `None` means "for everyone": what is rendered then is published to a room
and carries markers that chat/localize.py fills in per viewer (see chat/timefmt.py).
"""

from __future__ import annotations

import contextlib
import functools
import io
from collections import Counter
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple
from zoneinfo import available_timezones

from babel import Locale, UnknownLocaleError
from babel.core import get_global
from babel.dates import format_timedelta, get_timezone_location
from babel.lists import format_list
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations

DEFAULT_LOCALE = "en"
DEFAULT_TIME_ZONE = "UTC"
ROOT = Path(__file__).resolve().parent.parent / "translations"
COOKIE = "chat_locale"


class Variant(NamedTuple):
    """What one viewer needs to read a page: a language and a time zone. (A tuple: it keys
    the per-delivery lookups in chat/localize.py, and tuples hash in C.)"""

    locale: str = DEFAULT_LOCALE
    time_zone: str = DEFAULT_TIME_ZONE


# A tuple: the shared default cannot be changed in place.
_current: ContextVar[Variant | None] = ContextVar("chat_variant", default=Variant())  # noqa: B039


@functools.cache
def catalogs() -> dict[str, NullTranslations]:
    """Every language with a catalog under translations/, plus English (the source)."""
    found: dict[str, NullTranslations] = {DEFAULT_LOCALE: NullTranslations()}
    for po_path in sorted(ROOT.glob("*/LC_MESSAGES/messages.po")):
        with po_path.open("rb") as po_file:
            catalog = read_po(po_file, locale=po_path.parent.parent.name)
        compiled = io.BytesIO()
        write_mo(compiled, catalog, use_fuzzy=False)
        compiled.seek(0)
        found[po_path.parent.parent.name] = Translations(compiled)
    return found


def supported() -> list[str]:
    return list(catalogs())


@functools.cache
def time_zones() -> list[str]:
    """IANA zones people can pick, UTC first: no Etc/ zones, no old names (US/Eastern,
    Asia/Chongqing) that CLDR lists as aliases of another zone."""
    aliases = get_global("zone_aliases")
    zones = (zone for zone in available_timezones() if "/" in zone and zone not in aliases)
    return [DEFAULT_TIME_ZONE, *sorted(zone for zone in zones if not zone.startswith("Etc/"))]


@functools.cache
def time_zone_labels(locale: str) -> list[tuple[str, str]]:
    """(zone, what to show) in `locale`: "中国（上海）时间 · Asia/Shanghai". Slow the first
    time per language (~0.4 s): call it off the event loop."""
    labels = [(DEFAULT_TIME_ZONE, DEFAULT_TIME_ZONE)]
    for zone in time_zones()[1:]:
        labels.append((zone, f"{get_timezone_location(zone, locale=locale)} · {zone}"))
    return labels


def known_locale(value: str | None) -> str | None:
    return value if value in catalogs() else None


def known_time_zone(value: str | None) -> str | None:
    return value if value in set(time_zones()) else None


def negotiate(preferred: list[str]) -> str:
    """The best language with a catalog for the browser's languages, most wanted first.

    Catalogs are named by locale (zh_Hans), browsers send tags (zh-CN, zh-TW, zh): each tag is
    offered with its likely script too (CLDR: zh-CN is zh-Hans, zh-TW is zh-Hant), and a
    language with one catalog also answers to its bare code. So zh, zh-CN and zh-SG get zh_Hans,
    and so do zh-TW and zh-HK until a zh_Hant catalog exists (then they get that one).
    """
    available: dict[str, str] = {}
    languages = Counter(locale.split("_", 1)[0] for locale in supported())
    for locale in supported():
        available[locale.replace("_", "-")] = locale
        if languages[locale.split("_", 1)[0]] == 1:
            available.setdefault(locale.split("_", 1)[0], locale)
    candidates = [candidate for tag in preferred for candidate in _with_likely_script(tag)]
    try:
        chosen = Locale.negotiate(candidates, list(available), sep="-")
    except (UnknownLocaleError, ValueError, TypeError):
        return DEFAULT_LOCALE
    if chosen is None:
        return DEFAULT_LOCALE
    return (
        str(chosen) if str(chosen) in catalogs() else available.get(chosen.language, DEFAULT_LOCALE)
    )


def _with_likely_script(tag: str) -> list[str]:
    try:
        parsed = Locale.parse(tag, sep="-")
    except (UnknownLocaleError, ValueError, TypeError):
        return [tag]
    if parsed.script:
        return [tag, f"{parsed.language}-{parsed.script}"]
    key = f"{parsed.language}_{parsed.territory}" if parsed.territory else parsed.language
    likely = str(get_global("likely_subtags").get(key, "")).split("_")
    if len(likely) > 1 and len(likely[1]) == 4:  # language_Script[_Territory]
        return [tag, f"{parsed.language}-{likely[1]}"]
    return [tag]


def current() -> Variant | None:
    return _current.get()


def set_current(variant: Variant | None) -> None:
    _current.set(variant)


@contextlib.contextmanager
def use(variant: Variant | None) -> Iterator[None]:
    """Render in `variant` (None: for everyone, with markers) inside the block."""
    token = _current.set(variant)
    try:
        yield
    finally:
        _current.reset(token)


def translations() -> NullTranslations:
    variant = _current.get()
    return catalogs().get(variant.locale if variant else DEFAULT_LOCALE) or NullTranslations()


def gettext(message: str) -> str:
    return translations().gettext(message)


def ngettext(singular: str, plural: str, count: int) -> str:
    return translations().ngettext(singular, plural, count)


def page_locale() -> str:
    variant = _current.get()
    return variant.locale if variant else DEFAULT_LOCALE


def page_lang() -> str:
    return html_lang(page_locale())


def duration(seconds: int) -> str:
    """ "55 minutes", "45 秒钟": how long to wait, in the viewer's language."""
    return str(format_timedelta(timedelta(seconds=seconds), threshold=1, locale=page_locale()))


def number(value: int) -> str:
    return str(format_decimal(value, locale=page_locale()))


def css_string(text: str) -> str:
    """A quoted CSS string (for `content:` in the per-viewer stylesheet), CSS-escaped."""
    escaped = "".join(
        f"\\{ord(char):x} " if char in '"\\<>' or ord(char) < 32 else char for char in text
    )
    return f'"{escaped}"'


def listed(items: list[str]) -> str:
    """ "a, b and c" / "a、b和c": a list as the viewer's language writes one."""
    return str(format_list([str(item) for item in items], locale=page_locale()))


def html_lang(locale: str) -> str:
    """The BCP 47 tag for <html lang>: zh_Hans is zh-Hans."""
    return locale.replace("_", "-")


@functools.cache
def language_name(locale: str) -> str:
    """A language as its own speakers name it in a menu: English, 简体中文 (CLDR's names)."""
    parsed = Locale.parse(locale)
    return str(parsed.languages.get(locale) or parsed.display_name)
