"""Rendering the HTML fragments that go over websockets."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment
from quart import current_app

# Compiled templates kept by the synchronous overlay (Jinja's default for an environment).
CACHE_SIZE = 400


async def render_fragment(template_name: str, /, **context: Any) -> str:
    """Render a fragment without Quart's context processors, synchronously.

    Fragments are the same bytes for every viewer, so they need no request-bound context; and
    quart-auth's processor is synchronous, which Quart runs in a thread for every render.
    Quart's environment renders asynchronously (a generator step and an await per
    expression); the fragments call nothing asynchronous, so a synchronous overlay of the same
    environment (same loader, filters and globals) renders them in about half the time.
    """
    return fragments_env().get_template(template_name).render(context)


def fragments_env() -> Environment:
    env: Environment | None = current_app.extensions.get("fragments_env")
    if env is None:
        env = current_app.jinja_env.overlay(enable_async=False, cache_size=CACHE_SIZE)
        current_app.extensions["fragments_env"] = env
    return env
