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
import json
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple
from zoneinfo import available_timezones

from babel import Locale, UnknownLocaleError
from babel.dates import format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations
from quart import Quart, request, websocket

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
    """IANA zone names people can pick, UTC first."""
    zones = sorted(zone for zone in available_timezones() if "/" in zone and "Etc/" not in zone)
    return [DEFAULT_TIME_ZONE, *zones]


def known_locale(value: str | None) -> str | None:
    return value if value in catalogs() else None


def known_time_zone(value: str | None) -> str | None:
    return value if value in set(time_zones()) else None


def negotiate(preferred: list[str]) -> str:
    """The best supported language for an Accept-Language list (zh, zh-CN... get zh_Hans)."""
    by_language: dict[str, str] = {}
    for locale in supported():  # catalogs are named by locale (zh_Hans), browsers send tags
        by_language.setdefault(locale.split("_", 1)[0], locale)
    try:
        chosen = Locale.negotiate(preferred, list(by_language), sep="-")
    except (UnknownLocaleError, ValueError, TypeError):
        return DEFAULT_LOCALE
    return by_language.get(chosen.language, DEFAULT_LOCALE) if chosen else DEFAULT_LOCALE


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
    """A quoted CSS string (for `content:` in the per-viewer stylesheet)."""
    return json.dumps(text, ensure_ascii=False)


def html_lang(locale: str) -> str:
    """The BCP 47 tag for <html lang>: zh_Hans is zh-Hans."""
    return locale.replace("_", "-")


@functools.cache
def language_name(locale: str) -> str:
    """A language as its own speakers write it: English, 中文 (简体)."""
    return str(Locale.parse(locale).display_name)


async def viewer_variant(cookie: str | None, accept_languages: list[str]) -> Variant:
    """The person's saved choices, else the cookie's language, else the browser's, else English."""
    from chat.sessions import current_session  # sessions need nothing of this module

    session = await current_session()
    locale = (
        (known_locale(session.locale) if session else None)
        or known_locale(cookie)
        or negotiate(accept_languages)
    )
    time_zone = (known_time_zone(session.time_zone) if session else None) or DEFAULT_TIME_ZONE
    return Variant(locale, time_zone)


def init_app(app: Quart) -> None:
    from chat import timefmt  # it formats with this module's variant

    catalogs()  # a broken catalog stops start-up here, not on the first page
    env = app.jinja_env
    env.add_extension("jinja2.ext.i18n")
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.globals.update(
        supported_locales=supported,
        language_name=language_name,
        html_lang=html_lang,
        page_locale=page_locale,
        page_lang=page_lang,
    )
    env.filters.update(
        short_time=timefmt.short,
        full_time=timefmt.full,
        duration=duration,
        number=number,
        css_string=css_string,
    )

    @app.before_request
    async def choose_page_variant() -> None:
        if request.endpoint != "static":
            languages = [tag for tag, _ in request.accept_languages]
            set_current(await viewer_variant(request.cookies.get(COOKIE), languages))

    @app.before_websocket
    async def choose_socket_variant() -> None:
        languages = [tag for tag, _ in websocket.accept_languages]
        set_current(await viewer_variant(websocket.cookies.get(COOKIE), languages))
