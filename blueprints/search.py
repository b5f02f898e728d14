"""Search across the rooms a person may read (`/search?q=`), results linking into context."""

from __future__ import annotations

from quart import Blueprint, current_app, render_template, request
from quart_auth import login_required

from blueprints.rooms import signed_in
from chat import search, sidebar, store

bp = Blueprint("search", __name__)


@bp.get("/search")
@login_required
async def results() -> str:
    """A page of results, newest first, with "More results" when there are more."""
    session = await signed_in()
    query = search.parse(request.args.get("q", ""))
    before = search.parse_cursor(request.args.get("before"))
    per_minute = current_app.config["SEARCHES_PER_MINUTE"]
    found = await search.search(store.redis(), session.person, query, before, per_minute)
    return await render_template(
        "search/results.html",
        query=query,
        results=found,
        session=session,
        sidebar=await sidebar.for_page(store.redis(), session),
    )
