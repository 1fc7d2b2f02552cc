"""Brokers carry encoded events between nodes, and keep each channel's recent events.

A broker only publishes, listens and remembers a bounded window of recent events per channel;
the hub decides who on this node gets what. ``memory`` serves a single node in-process;
``redis`` shares events between nodes through Redis pub/sub (one subscriber connection per node,
one Redis subscription per channel that has local subscribers) and keeps the recent window in
Redis, so any node can replay it.

Every event carries its channel offset and epoch; offset 0 marks an ephemeral push (typing,
receipts, presence) that is neither ordered nor remembered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from handlers.ports import Recent

Deliver = Callable[[str, int, str, bytes], None]
"""Called with (channel, offset, epoch, payload) for each event the node receives; must not block."""


__all__ = ["Broker", "Deliver", "Recent", "envelope", "open_envelope"]


class Broker(Protocol):
    async def start(self, deliver: Deliver, reconnected: Callable[[], None]) -> None:
        """Start listening; ``reconnected`` is called after a lost connection is back."""
        ...

    async def close(self) -> None: ...

    async def subscribe(self, channel: str) -> None:
        """Return once messages published to ``channel`` from now on will reach this node."""
        ...

    def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``; ordered after every earlier subscribe call."""
        ...

    async def publish(self, channel: str, payload: bytes, offset: int = 0, epoch: str = "") -> None:
        """Send an event to every node; remember it in the channel's window when ``offset`` > 0."""
        ...

    async def recent(self, channel: str, since: int, limit: int) -> Recent | None:
        """Return the remembered window after ``since``; None when nothing is remembered."""
        ...

    async def ping(self) -> bool: ...


def envelope(offset: int, epoch: str, node: bytes, payload: bytes) -> bytes:
    """Prefix a payload with ``"{offset} {epoch} {node}\\n"`` for the trip between nodes."""
    return b"%d %s %s\n%s" % (offset, epoch.encode(), node, payload)


def open_envelope(data: bytes) -> tuple[int, str, bytes, bytes]:
    """Return (offset, epoch, node, payload) of :func:`envelope` bytes; ValueError if malformed."""
    head, sep, payload = data.partition(b"\n")
    parts = head.split(b" ")
    if not sep or len(parts) != 3:
        raise ValueError("no envelope")
    return int(parts[0]), parts[1].decode(), parts[2], payload
