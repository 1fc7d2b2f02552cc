"""One client's WebSocket connection as the hub and the handlers see it.

Outbound frames are written straight to the socket's transport: no queue object, no writer
task, no await per delivery. The transport's own buffer is the backlog, and its size is checked
before each write; a connection whose unsent bytes would pass ``max_backlog`` stops receiving
and is closed with :attr:`CloseCode.SLOW_CONSUMER`, so one stalled phone costs at most its
bound in memory and nobody else notices.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from gateway.metrics import Metrics
from gateway.protocol import CloseCode, error_payload, text_frame
from handlers.base import Context, Services
from handlers.errors import OpError

if TYPE_CHECKING:
    from gateway.hub import Hub

log = logging.getLogger(__name__)


class Connection:
    """A signed-in WebSocket: its subscriptions, its outbound path, and how it ends."""

    __slots__ = (
        "__weakref__",
        "_channels",
        "_closing",
        "_hub",
        "_max_backlog",
        "_metrics",
        "_transport",
        "_ws",
        "context",
        "user_id",
    )

    def __init__(
        self,
        user_id: str,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        hub: Hub,
        services: Services,
        metrics: Metrics,
        *,
        max_backlog: int,
    ) -> None:
        self.user_id = user_id
        self._ws = ws
        self._transport = transport
        self._hub = hub
        self._metrics = metrics
        self._max_backlog = max_backlog
        self._channels: set[str] | None = None  # made on first subscribe: most sockets idle
        self._closing = False
        self.context = Context(user_id, services, self)

    # -- outbound --------------------------------------------------------------------------

    def deliver(self, frame: bytes) -> None:
        """Write one encoded frame now, or close the connection if it is too far behind."""
        if self._closing:
            return
        transport = self._transport
        if transport.is_closing():
            return
        if transport.get_write_buffer_size() + len(frame) > self._max_backlog:
            self._metrics.ws_slow_consumer_closes += 1
            self.close(CloseCode.SLOW_CONSUMER, "slow consumer")
            return
        transport.write(frame)

    def send_payload(self, payload: bytes) -> None:
        self.deliver(text_frame(payload))

    def error(self, request_id: int | None, error: OpError) -> None:
        self._metrics.ws_errors_sent += 1
        self.deliver(text_frame(error_payload(request_id, error)))

    def buffered_bytes(self) -> int:
        return self._transport.get_write_buffer_size()

    # -- session (handlers.base.Session) ---------------------------------------------------

    @property
    def subscription_count(self) -> int:
        return 0 if self._channels is None else len(self._channels)

    def is_subscribed(self, channel: str) -> bool:
        return self._channels is not None and channel in self._channels

    async def subscribe(self, channel: str) -> None:
        if self._closing:
            return
        await self._hub.subscribe(channel, self)
        if self._closing:
            # Closed while the node was subscribing: the cleanup already ran, undo ours.
            self._hub.unsubscribe(channel, self)
            return
        if self._channels is None:
            self._channels = set()
        self._channels.add(channel)

    def unsubscribe(self, channel: str) -> bool:
        if self._channels is None or channel not in self._channels:
            return False
        self._channels.discard(channel)
        self._hub.unsubscribe(channel, self)
        return True

    def kicked(self, channel: str, reason: str) -> None:
        if self.unsubscribe(channel):
            self.send_payload(
                orjson.dumps({"op": "unsubscribed", "channel": channel, "reason": reason})
            )

    # -- lifecycle -------------------------------------------------------------------------

    def shutdown(self) -> None:
        self.close(CloseCode.SHUTDOWN, "server shutting down, reconnect")

    def close(self, code: CloseCode, reason: str) -> None:
        """Start closing with ``code``; never blocks the caller (delivery may be calling)."""
        if self._closing:
            return
        self._closing = True
        self._hub.spawn(self._close(code, reason))

    async def _close(self, code: CloseCode, reason: str) -> None:
        transport = self._transport
        try:
            async with asyncio.timeout(self._hub.close_timeout):
                await self._ws.close(code=code, message=reason.encode())
                # The close frame sits behind whatever the peer has not read yet; give it the
                # same bounded time to drain (the transport offers no event for that).
                while transport.get_write_buffer_size():  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        except TimeoutError:
            pass
        finally:
            # A peer that does not read never drains its buffer: drop it, freeing the memory.
            if transport.get_write_buffer_size():
                transport.abort()

    def detach(self) -> None:
        """Drop every subscription; called once when the socket's handler ends."""
        self._closing = True
        if self._channels:
            for channel in self._channels:
                self._hub.unsubscribe(channel, self)
            self._channels = None
