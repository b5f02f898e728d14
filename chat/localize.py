"""One viewer's copy of what was published to a room for everyone.

What a room's channel carries has no words and no local times in it, so it can be rendered
once per message. It is either HTML with time markers (chat/timefmt.py), or a template with
its arguments ("\\x02" + JSON) for the rare events that have words, such as "alice joined".
Each worker makes each viewer variant (language and time zone) of an item at most once and
hands the same string to all its sockets of that variant.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from chat import history, i18n, timefmt
from chat.fragments import render_fragment
from chat.i18n import Variant

TEMPLATE = "\x02"

# A published item as one viewer gets it: its key (a stream id, "revoke" or ""), that id
# parsed for ordering (or None), and the frame to send.
Piece = tuple[str, tuple[int, int] | None, str]


def template_payload(template: str, **args: Any) -> str:
    """A published item that each worker renders in each of its viewers' languages."""
    return TEMPLATE + json.dumps({"template": template, "args": args}, ensure_ascii=False)


class Localizer:
    """Per worker: pieces made lately, keyed by the published string itself. Every socket
    gets the very same string object from the bus, so its hash is computed once and the
    lookup is one dict probe per delivery.

    An item reaches all of a worker's sockets within moments, so a short memory does: a
    socket far behind only makes its piece again.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.made: OrderedDict[tuple[str, Variant], Piece] = OrderedDict()

    def cached(self, item: str, variant: Variant) -> Piece | None:
        return self.made.get((item, variant))

    async def make(self, item: str, variant: Variant) -> Piece:
        key, _, frame = item.partition("\n")
        position = history.id_key(key) if key and key != "revoke" else None
        if frame.startswith(TEMPLATE):
            payload = json.loads(frame[1:])
            with i18n.use(variant):
                frame = await render_fragment(payload["template"], **payload["args"])
        elif "\x01" in frame:
            frame = timefmt.fill_markers(frame, variant)
        piece = (key, position, frame)
        self.made[(item, variant)] = piece
        if len(self.made) > self.size:
            self.made.popitem(last=False)
        return piece
