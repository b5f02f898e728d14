"""Rendering the HTML fragments that go over websockets."""

from __future__ import annotations

from typing import Any

from quart import current_app


async def render_fragment(template_name: str, /, **context: Any) -> str:
    """Render a fragment without Quart's context processors.

    Fragments are the same bytes for every viewer, so they need no request-bound context; and
    quart-auth's processor is synchronous, which Quart runs in a thread for every render.
    """
    return await current_app.jinja_env.get_template(template_name).render_async(context)
