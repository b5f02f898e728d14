"""Friendly error pages: never a traceback to a person."""

from __future__ import annotations

import logging

from quart import (
    Quart,
    Response,
    has_request_context,
    redirect,
    render_template,
    request,
    url_for,
    websocket,
)
from quart.typing import ResponseReturnValue
from quart_auth import Unauthorized
from werkzeug.exceptions import HTTPException

from chat import store

log = logging.getLogger("chat.errors")

TITLES = {
    400: "That request was not understood",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    413: "Too large",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Temporarily unavailable",
}


def init_app(app: Quart) -> None:
    @app.errorhandler(Unauthorized)
    async def sign_in_first(_: Exception) -> ResponseReturnValue:
        if request.headers.get("HX-Request"):
            return Response("", 200, headers={"HX-Redirect": url_for("auth.login")})
        return redirect(url_for("auth.login"))

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> tuple[str, int]:
        code = error.code or 500
        return await page(code, TITLES.get(code, "Error"), error.description or ""), code

    for exception in store.REDIS_DOWN:
        app.register_error_handler(exception, redis_down)

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> tuple[str, int]:
        log.exception("unhandled error on %s", _path())
        return await page(500, TITLES[500], "The error was logged. Please try again."), 500


async def redis_down(error: Exception) -> tuple[str, int]:
    # Some redis-py errors (a pool wait that timed out) carry no text: name the kind too.
    log.warning("Redis unreachable on %s: %s: %s", _path(), type(error).__name__, error)
    return await page(
        503, TITLES[503], "The chat cannot reach its database right now. Try again in a moment."
    ), 503


async def page(code: int, title: str, detail: str) -> str:
    return await render_template("error.html", code=code, title=title, detail=detail)


def _path() -> str:
    return request.path if has_request_context() else websocket.path
