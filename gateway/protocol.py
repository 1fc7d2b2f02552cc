"""Wire-level pieces: WebSocket close codes and server frames encoded once.

Server-to-client frames are unmasked, so one encoded frame (header + payload) can be written
as-is to every subscriber's transport: an event is framed once per node, not once per socket.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Any

import orjson

from handlers.errors import OpError

_OP_TEXT = 0x81  # FIN + text opcode


class CloseCode(IntEnum):
    """Close codes; 4000-4499 mean "reconnect (with jitter)", 4500-4999 "do not, fix first"."""

    NORMAL = 1000
    MESSAGE_TOO_BIG = 1009
    SHUTDOWN = 4000
    """The node is going away (deploy, scale-in): reconnect, to any node, after jitter."""
    SLOW_CONSUMER = 4001
    """The client fell behind by more than the backlog bound: reconnect and catch up."""


def text_frame(payload: bytes) -> bytes:
    """Return an unmasked, final text frame carrying ``payload``."""
    size = len(payload)
    if size < 126:
        return bytes((_OP_TEXT, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", _OP_TEXT, 126, size) + payload
    return struct.pack("!BBQ", _OP_TEXT, 127, size) + payload


def reply_payload(request_id: int | None, result: Any) -> bytes:
    return orjson.dumps({"op": "reply", "id": request_id, "result": result})


def error_payload(request_id: int | None, error: OpError) -> bytes:
    return orjson.dumps({"op": "error", "id": request_id, **error.to_dict()})
