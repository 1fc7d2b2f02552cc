"""A lean WebSocket client for floods: frames pre-encoded, replies counted, pushes kept.

aiohttp's client costs tens of microseconds and a task per message; a flood of 50,000 requests
from one test process on a small machine would measure the client. This one is an
``asyncio.Protocol``: requests go out as one write of pre-encoded frames (masked with a zero
key, which RFC 6455 allows), and replies are parsed straight from the socket's bytes.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from typing import Any, cast

import orjson

HANDSHAKE_TIMEOUT = 30.0


def client_frame(payload: bytes) -> bytes:
    """A final, masked text frame; the zero mask leaves the payload as it is."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
    return header + b"\x00\x00\x00\x00" + payload


def request(op: str, request_id: int, **fields: Any) -> bytes:
    return client_frame(orjson.dumps({"op": op, "id": request_id, **fields}))


class FloodSocket(asyncio.Protocol):
    """One signed-in WebSocket: send frames, wait for N replies, keep the pushes of some ops."""

    def __init__(self, keep: frozenset[str]) -> None:
        self._keep = keep
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._upgraded = asyncio.get_running_loop().create_future()
        self._head = b""
        self.replies: list[dict[str, Any]] = []
        self.pushes: list[tuple[float, dict[str, Any]]] = []
        """(monotonic arrival time, push) of the kept ops."""
        self._wanted = 0
        self._enough: asyncio.Future[None] | None = None
        self.closed = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(
        cls, host: str, port: int, token: str, *, keep: frozenset[str] = frozenset()
    ) -> FloodSocket:
        loop = asyncio.get_running_loop()
        transport, sock = await loop.create_connection(lambda: cls(keep), host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        sock._write(
            (
                f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                await sock._upgraded
        except BaseException:
            transport.close()  # a refused handshake leaves no open socket behind
            raise
        return sock

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        for future in (self._upgraded, self._enough):
            if future is not None and not future.done():
                future.set_exception(ConnectionError(f"closed: {self._head[:200]!r}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not self._upgraded.done():
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self._head = bytes(buffer[:end])
            del buffer[: end + 4]
            if not self._head.startswith(b"HTTP/1.1 101"):
                self._upgraded.set_exception(ConnectionError(self._head.decode(errors="replace")))
                return
            self._upgraded.set_result(None)
        while len(buffer) >= 2:
            size = buffer[1] & 0x7F
            start = 2
            if size == 126:
                if len(buffer) < 4:
                    return
                size, start = int.from_bytes(buffer[2:4], "big"), 4
            elif size == 127:
                if len(buffer) < 10:
                    return
                size, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + size:
                return
            opcode = buffer[0] & 0x0F
            payload = bytes(buffer[start : start + size])
            del buffer[: start + size]
            if opcode == 0x1:
                self._message(payload)
            elif opcode == 0x9 and self._transport is not None:  # ping: answer at once
                self._transport.write(b"\x8a\x80\x00\x00\x00\x00")

    def _message(self, payload: bytes) -> None:
        if payload.startswith((b'{"op":"reply"', b'{"op":"error"')):
            self.replies.append(orjson.loads(payload))
            enough = self._enough
            if enough is not None and len(self.replies) >= self._wanted and not enough.done():
                enough.set_result(None)
            return
        message = orjson.loads(payload)
        if message.get("op") in self._keep:
            self.pushes.append((time.monotonic(), message))

    def _write(self, data: bytes) -> None:
        if self._transport is None:
            raise ConnectionError("the socket is closed")
        self._transport.write(data)

    def send(self, frames: bytes) -> None:
        """Write pre-encoded frames (one or many) now."""
        self._write(frames)

    async def wait_replies(self, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Wait until ``count`` replies (or errors) arrived in all; return them all."""
        if len(self.replies) < count:
            self._wanted = count
            self._enough = asyncio.get_running_loop().create_future()
            async with asyncio.timeout(timeout):
                await self._enough
            self._enough = None
        return self.replies

    def close(self) -> None:
        if self._transport is not None:
            self._transport.write(b"\x88\x82\x00\x00\x00\x00\x03\xe8")  # close 1000
            self._transport.close()
