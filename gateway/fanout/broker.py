"""Brokers carry encoded events between nodes, and keep each channel's recent events.

A broker only publishes, listens and remembers a bounded window of recent events per channel;
the hub decides who on this node gets what. ``memory`` serves a single node in-process;
``redis`` shares events between nodes through Redis pub/sub (one subscriber connection per node,
one Redis subscription per channel that has local subscribers) and keeps the recent window in
Redis, so any node can replay it.

Every event carries its channel offset and epoch; offset 0 marks an ephemeral push (typing,
receipts, presence) that is neither ordered nor remembered, and has no epoch: in its place, the
region it came from when it was made in another one ("" when made in this region; see
``gateway/regions``). A stored event also carries its
store time (milliseconds since the epoch, 0 when unknown), so that every node can observe its
publish-to-deliver lag (``moosic_delivery_lag_seconds``) without parsing the payload.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from handlers.ports import Recent

Deliver = Callable[[str, int, str, bytes, int], None]
"""Called with (channel, offset, epoch, payload, stored_at) for each event the node receives
(``stored_at``: the store time in ms since the epoch, 0 when unknown); must not block."""


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

    async def publish(
        self, channel: str, payload: bytes, offset: int = 0, epoch: str = "", stored_at: int = 0
    ) -> None:
        """Send an event to every node; remember it in the channel's window when ``offset`` > 0.

        ``stored_at`` (ms since the epoch) travels beside the payload for the lag histogram."""
        ...

    async def recent(self, channel: str, since: int, limit: int) -> Recent | None:
        """Return the remembered window after ``since``; None when nothing is remembered."""
        ...

    async def ping(self) -> bool: ...


def envelope(offset: int, epoch: str, node: bytes, payload: bytes, stored_at: int = 0) -> bytes:
    """Prefix a payload with ``"{offset} {epoch} {node}[@{stored_at}]\\n"`` for the trip between
    nodes.

    The store time rides on the node field, so the header keeps its three fields: a node of
    the previous release (a rolling deploy mixes them on one Redis) reads ``node@time`` as a
    node that is not itself and delivers the event; this release reads a plain ``node`` as a
    store time of 0 (not observed).
    """
    if stored_at:
        return b"%d %s %s@%d\n%s" % (offset, epoch.encode(), node, stored_at, payload)
    return b"%d %s %s\n%s" % (offset, epoch.encode(), node, payload)


def open_envelope(data: bytes) -> tuple[int, str, bytes, int, bytes]:
    """Return (offset, epoch, node, stored_at, payload) of :func:`envelope` bytes; ValueError
    if malformed."""
    head, sep, payload = data.partition(b"\n")
    parts = head.split(b" ")
    if not sep or len(parts) != 3:
        raise ValueError("no envelope")
    node, _at, stored = parts[2].partition(b"@")
    return int(parts[0]), parts[1].decode(), node, int(stored) if stored else 0, payload
