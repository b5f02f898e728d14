"""Live frames written straight to a socket's transport, framed once per message.

Every member of a room gets the same bytes for a message: a server's frames are not masked
and the app declines compression (chat/websocket_deflate.py), so a text frame is a 2-10 byte
header and the UTF-8 payload (RFC 6455, section 5.2). Sent through Quart and hypercorn, each
copy costs a task switch, half a dozen awaits, wsproto's framing and a lock; written to the
connection's transport it costs one `write()`. The bus (chat/bus.py) makes the frame once per
message and viewer variant, and a socket that is keeping up gets it written at once by the
worker's pub/sub reader (blueprints/live.py). Anything else (a socket that fell behind, the
handler's own replies, pings, the close) still goes through hypercorn.

The way in is hypercorn's objects, found through Quart's websocket: hypercorn 0.18 hands the
ASGI app its `WSStream.app_send`, and the stream reaches the `TCPServer` that owns the
connection's `StreamWriter`. `line()` checks every step and answers None when one is not
what it expects (another server, the test client, HTTP/2, a new version): the socket then
uses the ordinary path, and tests/test_wire.py fails loudly.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from wsproto.connection import Connection, ConnectionState

log = logging.getLogger("chat.wire")

# Above this many bytes waiting in the kernel-side buffer of asyncio, the socket is treated
# as not keeping up: its frames queue for the slow path, which waits for the peer (drain).
WRITE_BUFFER_LIMIT = 64 * 1024

TRANSPORT_METHODS = ("write", "is_closing", "get_write_buffer_size")
TEXT_FIN = 0x81  # FIN + opcode 1 (text); no RSV bits: no extension is in use


def text_frame(text: str) -> bytes:
    """One unmasked, unfragmented text frame carrying `text`."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        return bytes((TEXT_FIN, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", TEXT_FIN, 126, size) + payload
    return struct.pack("!BBQ", TEXT_FIN, 127, size) + payload


class Line:
    """A connection's transport, written to only while the websocket is open both ways."""

    __slots__ = ("stream", "transport")

    def __init__(self, stream: WSStream, transport: asyncio.WriteTransport) -> None:
        self.stream = stream
        self.transport = transport

    def ready(self) -> bool:
        """Open, and not holding more than WRITE_BUFFER_LIMIT unsent (else: the slow path)."""
        stream = self.stream
        return (
            not stream.closed
            and stream.state is ASGIWebsocketState.CONNECTED
            and stream.connection.state is ConnectionState.OPEN
            and not self.transport.is_closing()
            and self.transport.get_write_buffer_size() <= WRITE_BUFFER_LIMIT
        )

    def write(self, frame: bytes) -> None:
        """Write a whole frame (call ready() first); a connection that broke meanwhile is
        hypercorn's to notice, as for its own writes."""
        try:
            self.transport.write(frame)
        except (RuntimeError, ConnectionError) as error:  # write_eof() was called, or reset
            log.debug("direct write failed: %s", error)


_warned = False


def line(websocket: Any) -> Line | None:
    """The transport behind a Quart websocket served by hypercorn over HTTP/1.1, or None."""
    global _warned
    try:
        asgi_send = websocket._send.args[0]  # functools.partial(send_data, app_send)
        stream = asgi_send.__self__  # hypercorn's WSStream: app_send is its bound method
        protocol = stream.send.__self__  # H11Protocol (stream_send)
        server = protocol.send.__self__  # hypercorn.asyncio.tcp_server.TCPServer
        transport = server.writer.transport
        # uvloop's transports are not asyncio.WriteTransport subclasses: checked by method.
        # HTTP/1.1 only: over HTTP/2 (RFC 8441) the transport carries h2 frames, not ours.
        if (
            isinstance(stream, WSStream)
            and isinstance(protocol, H11Protocol)
            and isinstance(getattr(stream, "connection", None), Connection)
            and all(callable(getattr(transport, name, None)) for name in TRANSPORT_METHODS)
        ):
            return Line(stream, transport)
        reason = f"unexpected objects: {type(stream).__name__}, {type(transport).__name__}"
    except (AttributeError, IndexError, TypeError) as error:
        reason = repr(error)
    if not _warned:  # once per worker: every socket of it takes the ordinary path
        _warned = True
        log.warning("live frames go through hypercorn's send path (%s)", reason)
    return None
