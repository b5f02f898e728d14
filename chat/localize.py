"""One viewer's copy of what was published to a room for everyone.

What a room's channel carries has no words and no local times in it, so it can be rendered
once per message. It is either HTML with time markers (chat/timefmt.py), or a template with
its arguments ("\\x02" + JSON) for the rare events that have words, such as "alice joined".
The bus (chat/bus.py) makes each item into one piece per viewer variant (language and time
zone) among a worker's subscribers, as it arrives, and queues the same piece for all of
them: a socket that reads its queue late costs nothing more.
"""

from __future__ import annotations

import json
from typing import Any

from chat import history, i18n, timefmt
from chat.fragments import render_fragment
from chat.i18n import Variant
from chat.wire import text_frame

TEMPLATE = "\x02"

# A published item as one viewer gets it: its key (a stream id, "revoke" or ""), that id
# parsed for ordering (or None), the frame's text, and that text as a websocket frame's
# bytes (chat/wire.py; empty for an empty text), made once for every viewer alike.
Piece = tuple[str, tuple[int, int] | None, str, bytes]


def template_payload(template: str, **args: Any) -> str:
    """A published item that each worker renders in each of its viewers' languages."""
    return TEMPLATE + json.dumps({"template": template, "args": args}, ensure_ascii=False)


def needs_variant(item: str) -> bool:
    """Does this item read differently per viewer (else one piece serves everyone)?"""
    return TEMPLATE in item or "\x01" in item


async def make_piece(item: str, variant: Variant | None) -> Piece:
    head, _, frame = item.partition("\n")
    key = head.partition(" ")[0]  # a message's head also carries its number and mentions
    position = history.id_key(key) if key[:1].isdigit() else None
    if variant is not None and frame.startswith(TEMPLATE):
        payload = json.loads(frame[1:])
        with i18n.use(variant):
            frame = await render_fragment(payload["template"], **payload["args"])
    elif variant is not None and "\x01" in frame:
        frame = timefmt.fill_markers(frame, variant)
    return key, position, frame, text_frame(frame) if frame else b""
