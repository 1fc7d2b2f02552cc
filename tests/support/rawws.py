"""A bare-bones WebSocket client on a plain socket, for tests that need control over reading."""

from __future__ import annotations

import base64
import os
import socket
import struct
from collections.abc import Callable, Iterator


class RawWebSocket:
    """Blocking client: handshake, masked text frames out, frames in; reading is up to the test."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        *,
        rcvbuf: int | None = None,
        extra: bytes = b"",
        version: str = "13",
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect, so the advertised window stays small and the server's buffer fills.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(20)
        self.sock.connect((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: {version}\r\n\r\n"
        )
        # ``extra`` goes in the same write as the request: bytes the server reads past it.
        self.sock.sendall(request.encode() + extra)
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self._buffer += chunk
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        self.response_head = head.decode(errors="replace")
        if not head.startswith(b"HTTP/1.1 101"):
            self.sock.close()
            raise ConnectionError(self.response_head)

    def send_text(self, text: str) -> None:
        self.send_frame(0x1, text.encode())

    @staticmethod
    def encode(
        opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0
    ) -> bytes:
        """Return one client frame; the knobs let tests break the protocol on purpose."""
        first = (0x80 if fin else 0) | rsv | opcode
        size = len(payload)
        mask_bit = 0x80 if masked else 0
        if size < 126:
            header = struct.pack("!BB", first, mask_bit | size)
        elif size < 65536:
            header = struct.pack("!BBH", first, mask_bit | 126, size)
        else:
            header = struct.pack("!BBQ", first, mask_bit | 127, size)
        if not masked:
            return header + payload
        mask = os.urandom(4)
        return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    def send_frame(self, opcode: int, payload: bytes, **knobs: bool | int) -> None:
        self.sock.sendall(self.encode(opcode, payload, **knobs))  # type: ignore[arg-type]

    def flood(self, first: bytes, chunk: bytes, stopped: Callable[[], bool]) -> Iterator[None]:
        """Send ``first``, then ``chunk`` again and again until ``stopped()``, reading nothing;
        yields after each whole chunk. Sends are short (50 ms timeouts) so that the flood stops
        at once: a node that reads slowly opens its TCP window only in large steps, and a
        blocking sendall would wait for the next one. The caller sets the timeout it wants next.
        """
        sock = self.sock
        sock.settimeout(0.05)
        if first:
            sock.sendall(first)
        view, position = memoryview(chunk), 0
        while not stopped():
            try:
                position += sock.send(view[position:])
            except TimeoutError:
                continue
            if position == len(view):
                position = 0
                yield

    def _read(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def read_frame(self) -> tuple[int, bytes]:
        """Return (opcode, payload) of the next frame."""
        first, second = self._read(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self._read(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", self._read(8))
        return first & 0x0F, self._read(size)

    def read_close(self) -> tuple[int, str, int]:
        """Read up to the server's close frame; return its (code, reason) and the frames before."""
        frames = 0
        while True:
            opcode, payload = self.read_frame()
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                return code, payload[2:].decode(errors="replace"), frames
            frames += 1

    def close(self) -> None:
        self.sock.close()
