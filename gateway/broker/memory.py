"""In-process broker: one node, no external service."""

from __future__ import annotations

from gateway.broker import Deliver


class MemoryBroker:
    """Deliver every publish straight back to this node's hub."""

    def __init__(self) -> None:
        self._deliver: Deliver | None = None

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def close(self) -> None:
        self._deliver = None

    async def subscribe(self, channel: str) -> None:
        return None

    def unsubscribe(self, channel: str) -> None:
        return None

    async def publish(self, channel: str, payload: bytes) -> None:
        if self._deliver is not None:
            self._deliver(channel, payload)

    async def ping(self) -> bool:
        return self._deliver is not None
