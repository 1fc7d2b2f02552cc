"""Brokers carry encoded events between nodes.

A broker only publishes and listens; the hub decides who on this node gets what. ``memory``
serves a single node in-process; ``redis`` shares events between nodes through Redis pub/sub,
with one subscriber connection per node and one Redis subscription per channel that has local
subscribers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Deliver = Callable[[str, bytes], None]
"""Called with (channel, payload) for each message the node receives; must not block."""


class Broker(Protocol):
    async def start(self, deliver: Deliver) -> None: ...

    async def close(self) -> None: ...

    async def subscribe(self, channel: str) -> None:
        """Return once messages published to ``channel`` from now on will reach this node."""
        ...

    def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``; ordered after every earlier subscribe call."""
        ...

    async def publish(self, channel: str, payload: bytes) -> None: ...

    async def ping(self) -> bool: ...
