"""Incoming webhooks: `POST /hooks/<token>` posts a bot's message (for build servers, curl).

Answers are short plain text for machines. The token in the URL is the only credential: no
cookie, Origin or session counts here (chat/security.py exempts exactly this endpoint from the
cross-site check, since the caller is no browser and holds the secret itself).
"""

from __future__ import annotations

import json
import math
from typing import Any

from quart import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException

from chat import bots, membership, store
from chat.messages import Author, new_id, post_message
from chat.text import clean_body

bp = Blueprint("hooks", __name__)

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def answer(status: int, text: str, **headers: str) -> Response:
    return Response(text + "\n", status, mimetype="text/plain", headers=headers)


def not_found() -> Response:
    # One answer for unknown, revoked and malformed tokens, and for a bot whose room is gone.
    return answer(404, "not found")


@bp.post("/hooks/<token>")
async def post(token: str) -> Response:
    """Post the request's `body` (form field or JSON key) as the token's bot."""
    redis = store.redis()
    bot = await bots.by_token(redis, store.secret(), token)
    if bot is None:
        return not_found()
    if request.mimetype not in (FORM, JSON):
        return answer(415, f"send {FORM} or {JSON} with a body field")
    raw = await _body()
    if raw is None:
        return answer(400, 'expected a "body" text field')
    body = clean_body(raw)
    if not body:
        return answer(400, "empty body")
    limit = current_app.config["MAX_MESSAGE_CHARS"]
    if len(body) > limit:
        return answer(413, f"body too long: at most {limit} characters, got {len(body)}")
    wait_ms = await bots.take_send_token(redis, bot)
    if wait_ms:
        seconds = max(1, math.ceil(wait_ms / 1000))
        return answer(429, "too many messages; slow down", **{"Retry-After": str(seconds)})
    room = await membership.readable(redis, bot.room, bot.id)
    if room is None:
        return not_found()
    author = Author(person=bot.id, name=bot.name, email="", scope=bot.id, bot=True)
    posted = await post_message(room, author, body, new_id())
    return answer(201, f"posted {posted.id}")


async def _body() -> str | None:
    """The `body` field of a form or a JSON object; None when there is none or not text."""
    if request.mimetype == JSON:
        try:
            data: Any = json.loads(await request.get_data(as_text=False))
        except (ValueError, RecursionError):  # not UTF-8 or JSON, or nested past the stack
            return None
        value = data.get("body") if isinstance(data, dict) else None
    else:
        value = (await request.form).get("body")
    return value if isinstance(value, str) else None


@bp.errorhandler(HTTPException)
async def plain_error(error: HTTPException) -> Response:
    """Machines get a line of text (a body past 64 KiB is 413), never an HTML page."""
    code = error.code or 500
    return answer(code, (error.name or "error").lower())
