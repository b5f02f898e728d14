"""Liveness and readiness for load balancers and container healthchecks."""

from __future__ import annotations

from quart import Blueprint

from chat import archiver, bus, store

bp = Blueprint("health", __name__)


@bp.get("/healthz")
async def healthz() -> tuple[dict[str, object], int]:
    """The process is up and Redis answers; and what this host's archive has missed."""
    try:
        await store.ping()
    except store.REDIS_DOWN:
        return {"status": "unhealthy", "redis": "unreachable"}, 503
    return {"status": "ok", "archive": await _archive_state()}, 200


async def _archive_state() -> dict[str, object]:
    try:
        gaps, missing = await archiver.read("gaps")
    except archiver.ARCHIVE_DOWN as error:
        return {"status": "unavailable", "error": type(error).__name__}
    # Messages trimmed from Redis before this host's archive read them (logged when found).
    return {"status": "ok", "gaps": gaps, "messages_missing": missing}


@bp.get("/readyz")
async def readyz() -> tuple[dict[str, str], int]:
    """Ready for traffic: a pub/sub round trip through Redis within 1 s."""
    if not await bus.bus().roundtrip(timeout=1.0):
        return {"status": "not ready", "pubsub": "no round trip within 1 s"}, 503
    return {"status": "ready"}, 200
