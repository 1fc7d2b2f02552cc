"""Wire-level pieces: the WebSocket handshake, frame encoding, close codes.

Server-to-client frames are unmasked, so one encoded frame (header + payload) can be written
as-is to every subscriber's transport: an event is framed once per node, not once per socket.
The JSON payloads inside the frames (replies, errors, pushes) are built in
:mod:`handlers.messages`.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from enum import IntEnum

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
_FIN = 0x80
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class CloseCode(IntEnum):
    """Close codes; 4000-4499 mean "reconnect (with jitter)", 4500-4999 "do not, fix first"."""

    NORMAL = 1000
    PROTOCOL_ERROR = 1002
    """The client broke RFC 6455 (unmasked frame, reserved bits, bad fragmentation...)."""
    MESSAGE_TOO_BIG = 1009
    SHUTDOWN = 4000
    """The node is going away (deploy, scale-in): reconnect, to any node, after jitter."""
    SLOW_CONSUMER = 4001
    """The client fell behind by more than the backlog bound: reconnect and catch up."""
    TOKEN_EXPIRED = 4500
    """The access token the socket runs on expired: refresh it, then reconnect (or send
    ``auth`` with a fresh token before it expires to keep the socket)."""
    SESSION_REVOKED = 4501
    """The login session was revoked (logout, refresh-token reuse): sign in again."""
    FLOODING = 4502
    """The client sent frames faster than its frame budget (``MOOSIC_WS_FRAMES_PER_SECOND``)
    for ``MOOSIC_WS_FLOOD_CLOSE_SECONDS`` on end: slow down before reconnecting."""
    DISCONNECTED = 4503
    """A trusted back end disconnected the user (the server API's ``disconnect``): do not
    reconnect on your own; the reason says why."""


def accept_key(key: str) -> str:
    """Return ``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def upgrade_response(key: str) -> bytes:
    """Return the complete ``101 Switching Protocols`` response."""
    return (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
    ).encode()


def frame(opcode: int, payload: bytes) -> bytes:
    """Return an unmasked, final frame of ``opcode`` carrying ``payload``."""
    size = len(payload)
    first = _FIN | opcode
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", first, 126, size) + payload
    return struct.pack("!BBQ", first, 127, size) + payload


def text_frame(payload: bytes) -> bytes:
    """Return an unmasked, final text frame carrying ``payload``."""
    return frame(OP_TEXT, payload)


def close_frame(code: int, reason: str = "") -> bytes:
    # Control frames carry at most 125 bytes: 2 for the code, the rest for the reason.
    return frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:123])


PING_FRAME = frame(OP_PING, b"")
