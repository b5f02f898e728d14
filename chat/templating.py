"""Jinja filters and globals shared by the pages and the websocket fragments."""

from __future__ import annotations

from quart import Quart

from chat import labels, user_agents
from chat.addresses import shown_address, shown_domain
from chat.history import REACTIONS, Reactors
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
    app.jinja_env.globals["word"] = labels.word
    app.jinja_env.globals["device_name"] = user_agents.device_name
    app.jinja_env.globals["REACTIONS"] = REACTIONS
    app.jinja_env.filters["reactor_names"] = reactor_names


# A reaction's accessible name lists this many people at most ("👍 25: Ada, Bob, …").
NAMES_SHOWN = 10


def reactor_names(who: Reactors) -> str:
    names = ", ".join(name for _, name in who[:NAMES_SHOWN])
    return names + (", …" if len(who) > NAMES_SHOWN else "")
