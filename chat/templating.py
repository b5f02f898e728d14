"""Jinja filters and globals shared by the pages and the websocket fragments."""

from __future__ import annotations

from quart import Quart

from chat.messages import author_hue, author_tag, new_id
from chat.text import initials, linkify


def init_app(app: Quart) -> None:
    app.jinja_env.filters["linkify"] = linkify
    app.jinja_env.filters["initials"] = initials
    app.jinja_env.filters["author_tag"] = author_tag
    app.jinja_env.filters["author_hue"] = author_hue
    app.jinja_env.globals["new_client_id"] = new_id
