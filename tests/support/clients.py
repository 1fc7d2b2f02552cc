"""Client helpers: accounts over REST and a WebSocket client that pairs replies with requests."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from typing import Any

import aiohttp
import orjson

PASSWORD = "correct horse battery"
TIMEOUT = 20.0


async def register(http: Any, username: str, base: str = "") -> dict[str, Any]:
    """Register ``username`` through ``POST /v1/auth/register``; return the token response."""
    async with http.post(
        f"{base}/v1/auth/register", json={"username": username, "password": PASSWORD}
    ) as response:
        body = await response.json()
        assert response.status == 201, body
        return body  # type: ignore[no-any-return]


def bearer(account: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {account['access_token']}"}


class WsClient:
    """A JSON WebSocket client: ``call`` waits for the matching reply; pushes are queued."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self.pushes: deque[dict[str, Any]] = deque()
        self.other: list[dict[str, Any]] = []
        """Pushes skipped while waiting for another kind."""

    @classmethod
    async def connect(cls, http: Any, token: str, url: str = "/ws") -> WsClient:
        ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {token}"})
        return cls(ws)

    async def send(self, frame: dict[str, Any]) -> int:
        request_id = next(self._ids)
        await self.ws.send_str(orjson.dumps({**frame, "id": request_id}).decode())
        return request_id

    async def send_raw(self, text: str) -> None:
        await self.ws.send_str(text)

    async def receive(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        message = await self.ws.receive(timeout=timeout)
        if message.type is not aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"expected a text frame, got {message.type}: {message.data!r}")
        return orjson.loads(message.data)  # type: ignore[no-any-return]

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send an op and return its reply or error frame (pushes meanwhile are queued)."""
        request_id = await self.send({"op": op, **fields})
        async with asyncio.timeout(TIMEOUT):
            while True:
                frame = await self.receive()
                if frame.get("op") in {"reply", "error"} and frame.get("id") == request_id:
                    return frame
                self.pushes.append(frame)

    async def result(self, op: str, **fields: Any) -> dict[str, Any]:
        frame = await self.call(op, **fields)
        assert frame["op"] == "reply", frame
        return frame["result"]  # type: ignore[no-any-return]

    async def next_push(self, timeout: float = TIMEOUT, *, op: str | None = None) -> dict[str, Any]:
        """Return the next push; with ``op``, the next of that kind (others are set aside)."""
        for frame in list(self.pushes):
            if op is None or frame.get("op") == op:
                self.pushes.remove(frame)
                return frame
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.receive(timeout)
                if op is None or frame.get("op") == op:
                    return frame
                self.other.append(frame)

    async def next_event(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Return the next ``event`` push (presence, typing, join/leave pushes are set aside)."""
        return await self.next_push(timeout, op="event")

    async def close(self) -> None:
        await self.ws.close()
