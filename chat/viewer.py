"""What each request and socket is shown in: the viewer's language and time zone.

The person's saved choices, else the language in the `chat_locale` cookie (signed-out
pages), else the browser's Accept-Language negotiated by Babel, else English; the time zone
is the person's, else UTC. Chosen before anything else runs, so even an error page about a
forged host or an unreachable database speaks the viewer's language.
"""

from __future__ import annotations

from contextvars import ContextVar
from urllib.parse import quote

from quart import Quart, has_request_context, request, websocket

from chat import i18n, store, timefmt
from chat.i18n import COOKIE, Variant

# The language the viewer picked ("" = none: the browser's decides), for the menus.
_choice: ContextVar[str] = ContextVar("chat_locale_choice", default="")


async def viewer_variant(cookie: str | None, accept_languages: list[str]) -> Variant:
    from chat.sessions import current_session  # sessions need nothing of this module

    try:
        session = await current_session()
    except store.REDIS_DOWN:
        session = None  # the page (the database error, surely) still speaks the browser's
    chosen = (i18n.known_locale(session.locale) if session else None) or i18n.known_locale(cookie)
    _choice.set(chosen or "")
    zone = (i18n.known_time_zone(session.time_zone) if session else None) or i18n.DEFAULT_TIME_ZONE
    return Variant(chosen or i18n.negotiate(accept_languages), zone)


def chosen_locale() -> str:
    return _choice.get()


def back_path() -> str:
    """Where the language form returns to: this page if it can be fetched again, else "/"."""
    if not has_request_context() or request.method != "GET":
        return "/"  # a page answering a post, or a refused socket handshake
    query = request.query_string.decode("ascii", "replace")
    return quote(request.path, safe="/") + (f"?{query}" if query else "")


def init_app(app: Quart) -> None:
    i18n.catalogs()  # a broken catalog stops start-up here, not on the first page
    env = app.jinja_env
    env.add_extension("jinja2.ext.i18n")
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_callables(  # type: ignore[attr-defined]
        i18n.gettext, i18n.ngettext, newstyle=True
    )
    env.globals.update(
        supported_locales=i18n.supported,
        language_name=i18n.language_name,
        html_lang=i18n.html_lang,
        page_locale=i18n.page_locale,
        page_lang=i18n.page_lang,
        chosen_locale=chosen_locale,
        back_path=back_path,
    )
    env.filters.update(
        short_time=timefmt.short,
        full_time=timefmt.full,
        duration=i18n.duration,
        number=i18n.number,
        listed=i18n.listed,
        css_string=i18n.css_string,
    )

    @app.before_request
    async def choose_page_variant() -> None:
        if request.endpoint != "static":
            languages = [tag for tag, quality in request.accept_languages if quality > 0]
            i18n.set_current(await viewer_variant(request.cookies.get(COOKIE), languages))

    @app.before_websocket
    async def choose_socket_variant() -> None:
        languages = [tag for tag, quality in websocket.accept_languages if quality > 0]
        i18n.set_current(await viewer_variant(websocket.cookies.get(COOKIE), languages))
