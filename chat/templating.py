"""Jinja filters and globals shared by the pages and the websocket fragments."""

from __future__ import annotations

from quart import Quart

from chat.addresses import shown_address, shown_domain
from chat.messages import new_id
from chat.people import hue
from chat.text import initials, linkify


def init_app(app: Quart) -> None:
    app.jinja_env.filters["linkify"] = linkify
    app.jinja_env.filters["initials"] = initials
    app.jinja_env.filters["hue"] = hue
    app.jinja_env.filters["shown_domain"] = shown_domain
    app.jinja_env.filters["shown_address"] = shown_address
    app.jinja_env.globals["new_client_id"] = new_id
