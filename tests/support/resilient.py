"""Clients that behave like a well-written phone app: reconnect elsewhere and recover with since."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

RECONNECT_DELAY = (0.05, 0.3)


@dataclass
class Subscriber:
    """Subscribes to one channel through a list of node URLs, reconnecting to the next on loss."""

    http: aiohttp.ClientSession
    token: str
    channel: str
    urls: list[str]
    node: int = 0
    offsets: list[int] = field(default_factory=list)
    """Offsets of the events received, in arrival order."""
    position: int = 0
    """The last offset known: from the first subscribe reply, then from each event."""
    epoch: str = ""
    joined: bool = False
    """Set by the first subscribe reply: from then on every subscribe recovers with since."""
    reconnects: int = 0
    problems: list[str] = field(default_factory=list)
    close_codes: list[int] = field(default_factory=list)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def start(self) -> Subscriber:
        self.stop = asyncio.Event()
        self.subscribed = asyncio.Event()
        self.task = asyncio.create_task(self._run())
        return self

    @property
    def last(self) -> int:
        return self.position

    async def _run(self) -> None:
        while not self.stop.is_set():
            # A lost connection is the fault under test: reconnect below.
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                await self._session()
            if self.stop.is_set():
                return
            self.reconnects += 1
            self.node = (self.node + 1) % len(self.urls)
            await asyncio.sleep(random.uniform(*RECONNECT_DELAY))

    async def _session(self) -> None:
        url = f"{self.urls[self.node]}/ws?token={self.token}"
        async with self.http.ws_connect(url, heartbeat=None, autoping=True) as ws:
            frame: dict[str, Any] = {"op": "subscribe", "id": 1, "channel": self.channel}
            if self.joined:
                frame["since"] = {"offset": self.position, "epoch": self.epoch}
            await ws.send_str(orjson.dumps(frame).decode())
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                data = orjson.loads(message.data)
                if data["op"] == "reply" and data["id"] == 1:
                    result = data["result"]
                    if "since" in frame and not result.get("recovered"):
                        self.problems.append(f"not recovered: {result}")
                    if "since" not in frame:
                        self.position = result["offset"]
                        self.joined = True
                    self.epoch = result["epoch"] or self.epoch
                    self.subscribed.set()
                elif data["op"] == "error":
                    self.problems.append(f"error: {data}")
                elif data["op"] == "event":
                    offset = data["offset"]
                    if offset != self.position + 1:
                        self.problems.append(f"got offset {offset} after {self.position}")
                    self.offsets.append(offset)
                    self.position = offset
                if self.stop.is_set():
                    return
            if ws.close_code is not None:
                self.close_codes.append(ws.close_code)

    async def finish(self) -> None:
        self.stop.set()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


@dataclass
class Publisher:
    """Publishes numbered messages at a steady rate; retries through other nodes on loss."""

    http: aiohttp.ClientSession
    token: str
    channel: str
    urls: list[str]
    node: int = 0
    acked: dict[int, int] = field(default_factory=dict)
    """Message number -> the offset the gateway acknowledged."""
    duplicates: int = 0

    async def run(self, count: int, interval: float) -> None:
        numbers = iter(range(count))
        pending = next(numbers, None)
        ids = itertools.count(1)
        while pending is not None:
            try:
                url = f"{self.urls[self.node]}/ws?token={self.token}"
                async with self.http.ws_connect(url, heartbeat=None) as ws:
                    while pending is not None:
                        request_id = next(ids)
                        frame = {
                            "op": "publish",
                            "id": request_id,
                            "channel": self.channel,
                            "data": {"n": pending},
                            "client_msg_id": f"m{pending}",
                        }
                        await ws.send_str(orjson.dumps(frame).decode())
                        reply = await self._reply(ws, request_id)
                        if reply is None:
                            break  # connection lost: retry the same message elsewhere
                        self.acked[pending] = reply["offset"]
                        self.duplicates += reply["duplicate"]
                        pending = next(numbers, None)
                        await asyncio.sleep(interval)
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            if pending is not None:
                self.node = (self.node + 1) % len(self.urls)
                await asyncio.sleep(random.uniform(*RECONNECT_DELAY))

    @staticmethod
    async def _reply(ws: aiohttp.ClientWebSocketResponse, request_id: int) -> dict[str, Any] | None:
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                return None
            data = orjson.loads(message.data)
            if data.get("id") == request_id:
                if data["op"] == "reply":
                    return data["result"]  # type: ignore[no-any-return]
                if data.get("retryable"):
                    return None
                raise AssertionError(f"publish refused: {data}")
        return None
