"""Frames coming in on a room socket: a budget taken before anything else, then decoding."""

from __future__ import annotations

import json
import time
from typing import Any

MAX_FRAME_BYTES = 64 * 1024

# Close codes: hx-ws reconnects after 1001/1011-1014 and stays closed after 1003/1008/1009.
CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009


class FrameBudget:
    """Every incoming frame takes a token before anything else looks at it, so a flood of
    frames (valid or not) costs a comparison each, not a parse, a render and a reply."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.refilled = burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def decode(raw: str | bytes | None) -> dict[str, Any] | tuple[int, str]:
    """The frame's JSON object, or (close code, reason) for a frame no client of ours sends."""
    if not isinstance(raw, str):  # bytes, or None for an empty binary frame (Quart)
        return CLOSE_UNSUPPORTED, "text frames only"
    if len(raw) > MAX_FRAME_BYTES:
        return CLOSE_TOO_BIG, "frame too large"
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # '[' * 20000 nests past the parser's limit
        data = None
    if not isinstance(data, dict):
        return CLOSE_UNSUPPORTED, "expected a JSON object"
    return data
