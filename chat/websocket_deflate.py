"""Refuse permessage-deflate on websockets.

hypercorn 0.18 always accepts the extension when a browser offers it (Chromium does), and then
wsproto deflates every fragment again for every recipient and keeps a compressor per socket.
Measured in bench/REPORT.md: server CPU per delivery 68 -> 43 microseconds, sustained fan-out
5k -> 20k deliveries/s, idle memory per socket 197 -> 49 KB. Our fragments are small HTML, so
sending them uncompressed costs little bandwidth. hypercorn has no setting for this, hence the
narrow patch below; the e2e tests prove Chromium works without the extension.
"""

from __future__ import annotations

from hypercorn.protocol import ws_stream
from wsproto.extensions import PerMessageDeflate


class DeclinedPerMessageDeflate(PerMessageDeflate):
    def accept(self, offer: str) -> None:
        return None  # decline the offer; the extension stays disabled for this connection


def refuse_permessage_deflate() -> None:
    ws_stream.PerMessageDeflate = DeclinedPerMessageDeflate  # type: ignore[attr-defined]
