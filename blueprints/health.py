"""Liveness and readiness for load balancers and container healthchecks."""

from __future__ import annotations

from quart import Blueprint

from chat import bus, store

bp = Blueprint("health", __name__)


@bp.get("/healthz")
async def healthz() -> tuple[dict[str, str], int]:
    """The process is up and Redis answers."""
    try:
        await store.redis().ping()
    except store.REDIS_DOWN:
        return {"status": "unhealthy", "redis": "unreachable"}, 503
    return {"status": "ok"}, 200


@bp.get("/readyz")
async def readyz() -> tuple[dict[str, str], int]:
    """Ready for traffic: a pub/sub round trip through Redis within 1 s."""
    if not await bus.bus().roundtrip(timeout=1.0):
        return {"status": "not ready", "pubsub": "no round trip within 1 s"}, 503
    return {"status": "ready"}, 200
