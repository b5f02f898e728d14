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
from chat.problems import Problem, ShownError, problem

log = logging.getLogger("chat.errors")


def init_app(app: Quart) -> None:
    @app.errorhandler(Unauthorized)
    async def sign_in_first(_: Exception) -> ResponseReturnValue:
        if request.headers.get("HX-Request"):
            return Response("", 200, headers={"HX-Redirect": url_for("auth.login")})
        return redirect(url_for("auth.login"))

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> tuple[str, int]:
        code = error.code or 500
        return await page(code), code

    @app.errorhandler(ShownError)
    async def shown_error(error: ShownError) -> tuple[str, int]:
        return await page(error.status, error.problem), error.status

    for exception in store.REDIS_DOWN:
        app.register_error_handler(exception, redis_down)

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> tuple[str, int]:
        log.exception("unhandled error on %s", _path())
        return await page(500, problem("unexpected")), 500


async def redis_down(error: Exception) -> tuple[str, int]:
    # Some redis-py errors (a pool wait that timed out) carry no text: name the kind too.
    log.warning("Redis unreachable on %s: %s: %s", _path(), type(error).__name__, error)
    return await page(503, problem("database_unreachable")), 503


async def page(code: int, reason: Problem | None = None) -> str:
    """The error page; its title comes from the status code (templates/error.html)."""
    return await render_template("error.html", code=code, problem=reason)


def _path() -> str:
    return request.path if has_request_context() else websocket.path
