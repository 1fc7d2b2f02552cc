"""One client's WebSocket, owned by the gateway from the 101 response on.

After aiohttp has parsed the upgrade request and the gateway has checked the token and the
country, the socket's transport is handed to a :class:`Connection`, an ``asyncio.Protocol`` of
ours: one slotted object per socket, no aiohttp request, response, reader, writer or handler
task kept alive for it. That is what keeps an idle connection small.

Outbound frames are written straight to the transport: no queue object, no writer task, no
await per delivery. The transport's own buffer is the backlog, and its size is checked before
each write in :meth:`Connection.deliver`, the one path every frame takes (events, replies,
errors, pongs, the heartbeat's pings); a connection whose unsent bytes would pass
``max_backlog`` stops receiving and is closed with :attr:`CloseCode.SLOW_CONSUMER`, so one
stalled phone costs at most its bound. The only bytes written past the bound are one close
frame (at most 127 bytes, once per connection: :meth:`Connection._write_close`).

Inbound frames are parsed here (RFC 6455: masking, fragmentation, control frames), within one
budget per connection that the loop enforces:

- every frame (data, continuation, ping, pong, empty or not) takes a token from a bucket of
  ``frame_burst`` refilled at ``frame_rate`` a second; when it is empty, reading pauses until
  it has refilled, and a connection kept at an empty bucket for ``flood_close`` seconds is
  closed with :attr:`CloseCode.FLOODING`;
- one call parses at most :data:`FRAMES_PER_CALL` frames, then yields to the loop (reading
  pauses, the rest of the bytes are parsed on a later turn), so one large read of tiny frames
  cannot hold the loop;
- complete messages are handled one at a time, in order, by a task that exists only while
  there is work; when ``max_queued`` messages or more than ``max_inbound`` bytes wait (each
  message counts :data:`MESSAGE_COST` bytes on top of its size, so empty ones count too),
  reading pauses until they are handled.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from aiohttp._websocket.helpers import websocket_mask  # C-accelerated, aiohttp is pinned

from gateway.auth.tokens import LEEWAY_SECONDS
from gateway.logs import conn_id
from gateway.metrics import Metrics
from gateway.ws.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    PING_FRAME,
    CloseCode,
    close_frame,
    frame,
    text_frame,
)
from handlers.base import Context, Identity, Services
from handlers.errors import BINARY_NOT_SUPPORTED, FRAME_TOO_LARGE, OpError
from handlers.messages import error_message, unsubscribed_message

if TYPE_CHECKING:
    from gateway.fanout.hub import Hub
    from gateway.ws.registry import Registry

log = logging.getLogger(__name__)

_OPEN, _CLOSING, _CLOSED = 0, 1, 2
SHUTDOWN_RETRY_MS = (500, 5000)
"""Range of the reconnect delay suggested to each client of a node that shuts down."""
FRAMES_PER_CALL = 64
"""Frames parsed per turn of the loop for one connection; the rest waits for the next turn."""
MESSAGE_COST = 128
"""Bytes a queued message counts for on top of its payload: about what the tuple, the bytes
object and the deque slot take, so a flood of empty messages pauses reading too."""
THROTTLE_WAKEUP = 0.01
"""Shortest pause of a connection whose frame budget is spent: wake-ups come in batches."""


@dataclass(frozen=True, slots=True)
class WsNode:
    """What every connection of a node shares (one object, one reference per socket)."""

    hub: Hub
    registry: Registry
    services: Services
    metrics: Metrics
    max_frame: int
    """Messages over this many bytes get a ``frame_too_large`` error."""
    hard_frame: int
    """Messages over this many bytes close the socket with 1009 before being read."""
    max_backlog: int
    close_timeout: float
    max_inbound: int
    """Bytes of received, unhandled messages before reading pauses."""
    max_queued: int
    """Received, unhandled messages before reading pauses."""
    frame_rate: float
    """Inbound frames a second a connection's budget refills by."""
    frame_burst: float
    """Inbound frames a connection may send at once (the bucket's size)."""
    flood_close: float
    """Seconds at an empty frame budget before the connection is closed as a flooder."""


_CONNECTION_IDS = itertools.count(1)


class Connection(asyncio.Protocol):
    """A signed-in WebSocket: its subscriptions, its frames in and out, and how it ends."""

    __slots__ = (
        "__weakref__",
        "_after_reply",
        "_buffer",
        "_channels",
        "_close_timer",
        "_fragments",
        "_inbound",
        "_inbound_bytes",
        "_node",
        "_pinged",
        "_refilled",
        "_seen",
        "_shutting_down",
        "_state",
        "_task",
        "_throttled_since",
        "_tokens",
        "_transport",
        "_wakeup",
        "cid",
        "context",
        "expires_at",
        "session_id",
        "user_id",
    )

    def __init__(self, user_id: str, node: WsNode, country: str | None = None) -> None:
        self.cid = next(_CONNECTION_IDS)
        """This socket's number in this process: ``conn_id`` ``c{cid}`` on its log lines."""
        self.user_id = user_id
        self._node = node
        self.context = Context(user_id, node.services, self, country)
        self._transport: asyncio.Transport | None = None
        self._state = _OPEN
        self._buffer: bytearray | None = None  # partial frame bytes
        self._fragments: bytearray | None = None  # a fragmented message being reassembled
        self._inbound: deque[tuple[int, bytes]] | None = None  # messages waiting to be handled
        self._inbound_bytes = 0
        self._task: asyncio.Task[None] | None = None
        self._channels: set[str] | None = None  # made on first subscribe: most sockets idle
        self._close_timer: asyncio.TimerHandle | None = None
        self._seen = True
        self._pinged = False
        self._after_reply: list[tuple[str, list[bytes], int, str]] | None = None
        self._shutting_down = False
        self._tokens = node.frame_burst  # the frame budget: a full bucket to start with
        self._refilled = 0.0  # loop time of the last refill (set in connection_made)
        self._throttled_since = 0.0  # loop time the budget ran out (0: not running out)
        self._wakeup: asyncio.Handle | None = None  # parses on once the budget allows
        self.expires_at = 0
        """When the access token the socket runs on expires (0: never checked)."""
        self.session_id: str | None = None

    @property
    def log_id(self) -> str:
        return f"c{self.cid}"

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but they implement it.
        self._transport = cast(asyncio.Transport, transport)
        # The bucket starts full now: from loop time 0 the first refill would fill it again,
        # a second burst for free.
        self._refilled = asyncio.get_running_loop().time()

    def data_received(self, data: bytes) -> None:
        self._seen = True
        if self._state == _CLOSED:
            return
        buffer = self._buffer
        if buffer is None:
            buffer = self._buffer = bytearray(data)
        else:
            buffer += data
        self._pump()

    def eof_received(self) -> bool | None:
        return None  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self._state = _CLOSED
        self._transport = None
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._drop_inbound()
        self._buffer = self._fragments = None
        hub = self._node.hub
        if self._channels:
            for channel in self._channels:
                hub.unsubscribe(channel, self)
            self._channels = None
        hub.remove_member(self)

    # -- inbound ---------------------------------------------------------------------------

    def _pump(self) -> None:
        """Parse what the budget allows, then read on, or stay paused until something wakes us.

        Reading is paused while any of these holds, and each wakes the pump when it is over:
        the frame budget is spent (a timer), one turn's frames were parsed (``call_soon``), too
        much waits unhandled (:meth:`_handle_inbound`), the node shuts down (never).
        """
        if self._wakeup is not None:
            self._wakeup.cancel()  # called early (a no-op when it is the wake-up itself)
            self._wakeup = None
        if self._state == _CLOSED:
            return
        buffer = self._buffer
        if buffer is not None:
            self._seen = True  # frames still parsed prove the peer is alive, as bytes do
            if not self._parse(buffer) or self._state == _CLOSED:
                return
            if not buffer:
                self._buffer = None
        transport = self._transport
        if transport is not None and not self._shutting_down and not transport.is_reading():
            transport.resume_reading()

    def _pause(self) -> None:
        transport = self._transport
        if transport is not None and transport.is_reading():
            transport.pause_reading()

    def _budget(self) -> bool:
        """Refill the frame budget; False if it is spent (then reading pauses and a timer is set).

        A connection that finds its budget spent again and again without the bucket ever
        refilling to half is sending faster than ``frame_rate`` all along: after ``flood_close``
        seconds of that it is closed with 4502. A burst followed by quiet refills the bucket.
        """
        node = self._node
        loop = asyncio.get_running_loop()
        now = loop.time()
        tokens = min(node.frame_burst, self._tokens + (now - self._refilled) * node.frame_rate)
        self._tokens = tokens
        self._refilled = now
        if tokens >= node.frame_burst / 2:
            self._throttled_since = 0.0
        if tokens >= 1:
            return True
        if not self._throttled_since:
            self._throttled_since = now
            node.metrics.ws_frame_budget_pauses += 1
        elif now - self._throttled_since >= node.flood_close and self._state == _OPEN:
            log.info(
                "closing a WebSocket of %s: over its frame budget",
                self.user_id,
                extra={"conn_id": self.log_id},
            )
            node.metrics.ws_flood_closes += 1
            self.close(CloseCode.FLOODING, "too many frames: slow down")
        self._pause()
        delay = max((1.0 - tokens) / node.frame_rate, THROTTLE_WAKEUP)
        self._wakeup = loop.call_later(delay, self._pump)
        return False

    def _queue_full(self) -> bool:
        inbound = self._inbound
        node = self._node
        return inbound is not None and (
            len(inbound) >= node.max_queued or self._inbound_bytes > node.max_inbound
        )

    def _parse(self, buffer: bytearray) -> bool:
        """Take complete frames off the front of ``buffer`` while the budget allows.

        Return True when every complete frame is taken (more bytes are wanted), False when
        parsing stopped early: reading is then paused and something is set to pump again.
        """
        node = self._node
        frames = FRAMES_PER_CALL
        while self._state != _CLOSED:
            if self._queue_full():
                self._pause()  # _handle_inbound pumps again once half of it is handled
                return False
            size = len(buffer)
            if size < 2:
                return True
            first, second = buffer[0], buffer[1]
            opcode = first & 0x0F
            length = second & 0x7F
            start = 2
            if length == 126:
                if size < 4:
                    return True
                length = int.from_bytes(buffer[2:4], "big")
                start = 4
            elif length == 127:
                if size < 10:
                    return True
                length = int.from_bytes(buffer[2:10], "big")
                start = 10
            if first & 0x70 or not second & 0x80:
                self._fail(CloseCode.PROTOCOL_ERROR, "reserved bits set or frame not masked")
                return True
            if opcode >= OP_CLOSE and (length > 125 or not first & 0x80):
                self._fail(CloseCode.PROTOCOL_ERROR, "bad control frame")
                return True
            pending = len(self._fragments) if self._fragments is not None else 0
            if length + pending > node.hard_frame:
                # Refused on its header: the payload is never read into memory.
                self._fail(CloseCode.MESSAGE_TOO_BIG, "message too big")
                return True
            end = start + 4 + length
            if size < end:
                return True
            # Every complete frame costs budget, whatever it is: control frames, continuations
            # and empty frames cost the loop as much to parse as any other.
            if self._tokens < 1 and not self._budget():
                return False
            if not frames:
                self._pause()
                self._wakeup = asyncio.get_running_loop().call_soon(self._pump)
                return False
            frames -= 1
            self._tokens -= 1
            mask = bytes(buffer[start : start + 4])
            payload = buffer[start + 4 : end]
            del buffer[:end]
            if length:
                websocket_mask(mask, payload)
            self._frame(opcode, bool(first & 0x80), payload)
        return True

    def _frame(self, opcode: int, fin: bool, payload: bytearray) -> None:
        if opcode in (OP_TEXT, OP_BINARY):
            if self._fragments is not None:
                self._fail(CloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
            elif fin:
                self._received(opcode, bytes(payload))
            else:
                self._fragments = payload
                self._fragments.insert(0, opcode)  # remember the opcode in front
        elif opcode == OP_CONTINUATION:
            fragments = self._fragments
            if fragments is None:
                self._fail(CloseCode.PROTOCOL_ERROR, "continuation without a message")
                return
            fragments += payload
            if fin:
                self._fragments = None
                self._received(fragments[0], bytes(fragments[1:]))
        elif opcode == OP_PING:
            self.deliver(frame(OP_PONG, bytes(payload)))  # within the backlog bound, as any frame
        elif opcode == OP_PONG:
            pass  # _seen is already set: any bytes prove the peer is alive
        elif opcode == OP_CLOSE:
            self._closed_by_peer(bytes(payload))
        else:
            self._fail(CloseCode.PROTOCOL_ERROR, "unknown opcode")

    def _received(self, opcode: int, message: bytes) -> None:
        node = self._node
        node.metrics.ws_frames_received += 1
        if self._state != _OPEN:
            return
        inbound = self._inbound
        if inbound is None:
            inbound = self._inbound = deque()
        inbound.append((opcode, message))
        self._inbound_bytes += len(message) + MESSAGE_COST
        if self._task is None:
            # The ops it runs log with this socket's id (a task keeps the context it got).
            context = contextvars.copy_context()
            context.run(conn_id.set, self.log_id)
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._handle_inbound(), context=context)

    async def _handle_inbound(self) -> None:
        node = self._node
        inbound = self._inbound
        try:
            while inbound and self._state == _OPEN and not self._shutting_down:
                opcode, message = inbound.popleft()
                self._inbound_bytes -= len(message) + MESSAGE_COST
                transport = self._transport
                if (
                    self._wakeup is None
                    and transport is not None
                    and not transport.is_reading()
                    and len(inbound) <= node.max_queued // 2
                    and self._inbound_bytes <= node.max_inbound // 2
                ):
                    self._pump()  # parses what was read meanwhile, then reads on
                if opcode == OP_BINARY:
                    self.error(None, OpError(BINARY_NOT_SUPPORTED, "send JSON in text frames"))
                elif len(message) > node.max_frame:
                    self.error(
                        None, OpError(FRAME_TOO_LARGE, f"frames are at most {node.max_frame} bytes")
                    )
                else:
                    self.send_payload(await node.registry.handle(self.context, message))
                    after, self._after_reply = self._after_reply, None
                    for activation in after or ():
                        self._activate(*activation)
        finally:
            self._task = None
            if self._shutting_down:
                self._close_for_shutdown()

    # -- outbound --------------------------------------------------------------------------

    def deliver(self, frame: bytes) -> None:
        """Write one encoded frame now, or close the connection if it is too far behind.

        The one checked path for every frame the server sends (events, replies, errors,
        pongs, pings): only :meth:`_write_close` writes past it.
        """
        if self._state != _OPEN:
            return
        transport = self._transport
        if transport is None:
            return
        if transport.get_write_buffer_size() + len(frame) > self._node.max_backlog:
            self._node.metrics.ws_slow_consumer_closes += 1
            self.close(CloseCode.SLOW_CONSUMER, "slow consumer")
            return
        transport.write(frame)

    def send_payload(self, payload: bytes) -> None:
        self.deliver(text_frame(payload))

    def error(self, request_id: int | None, error: OpError) -> None:
        self._node.metrics.ws_errors_sent += 1
        self.deliver(text_frame(error_message(request_id, error)))

    def _write_close(self, transport: asyncio.Transport, code: int, reason: str = "") -> None:
        # The only write past the backlog bound: one close frame (at most 127 bytes) per
        # connection, since every caller leaves the open state for good before writing it.
        transport.write(close_frame(code, reason))

    def buffered_bytes(self) -> int:
        transport = self._transport
        return 0 if transport is None else transport.get_write_buffer_size()

    # -- session (handlers.base.Session) ---------------------------------------------------

    @property
    def subscription_count(self) -> int:
        return 0 if self._channels is None else len(self._channels)

    def is_subscribed(self, channel: str) -> bool:
        return self._channels is not None and channel in self._channels

    async def subscribe(self, channel: str) -> None:
        if self._state != _OPEN:
            return
        hub = self._node.hub
        await hub.subscribe(channel, self, pending=True)
        if self._state == _CLOSED:
            # Gone while the node was subscribing: the cleanup already ran, undo ours.
            hub.unsubscribe(channel, self)
            return
        if self._channels is None:
            self._channels = set()
        self._channels.add(channel)

    def subscribed(self, prefix: str) -> int:
        return sum(1 for c in self._channels or () if c.startswith(prefix))

    def activate(self, channel: str, replay: list[bytes], after: int, epoch: str) -> None:
        # The reply to the subscribe op must go out first; _handle_inbound calls _activate.
        if self._after_reply is None:
            self._after_reply = []
        self._after_reply.append((channel, replay, after, epoch))

    def _activate(self, channel: str, replay: list[bytes], after: int, epoch: str) -> None:
        if not self.is_subscribed(channel):
            return
        for payload in replay:
            self.deliver(text_frame(payload))
        self._node.hub.activate(channel, self, after, epoch)

    def lagged(self) -> None:
        self._node.metrics.ws_slow_consumer_closes += 1
        self.close(CloseCode.SLOW_CONSUMER, "too many events while recovering")

    def unsubscribe(self, channel: str) -> bool:
        if self._channels is None or channel not in self._channels:
            return False
        self._channels.discard(channel)
        self._node.hub.unsubscribe(channel, self)
        return True

    def renew(self, identity: Identity) -> None:
        self.expires_at = identity.expires_at
        self.session_id = identity.session_id

    def session_revoked(self) -> None:
        self._node.metrics.ws_auth_closes += 1
        self.close(CloseCode.SESSION_REVOKED, "session revoked: sign in again")

    def disconnect(self, code: int, reason: str) -> None:
        """Close on a trusted back end's word: 4501 (its sessions ended) or 4503."""
        if code == CloseCode.SESSION_REVOKED:
            self._node.metrics.ws_auth_closes += 1
            self.close(CloseCode.SESSION_REVOKED, reason)
        else:
            self.close(CloseCode.DISCONNECTED, reason)

    def kicked(self, channel: str, reason: str) -> None:
        if self.unsubscribe(channel):
            self.send_payload(unsubscribed_message(channel, reason))

    # -- liveness and closing --------------------------------------------------------------

    def heartbeat(self) -> None:
        """Called by the hub every heartbeat interval: ping a quiet peer, drop a silent one.

        A socket whose access token expired (and was not renewed with ``auth``) is closed here,
        so it outlives its token by at most the verification leeway plus one interval.
        """
        if self.expires_at and time.time() > self.expires_at + LEEWAY_SECONDS:
            self._node.metrics.ws_auth_closes += 1
            self.close(CloseCode.TOKEN_EXPIRED, "access token expired: refresh, then reconnect")
            return
        if self._seen:
            self._seen = False
            self._pinged = False
        elif not self._pinged:
            self._pinged = True
            self.deliver(PING_FRAME)
        else:
            self.abort()  # nothing at all for a whole interval after a ping: the peer is gone

    def shutdown(self) -> None:
        """Stop reading, let the op in progress finish and answer, then close with 4000.

        The close reason carries a random reconnect delay, so the clients of a node that goes
        away do not all land on the remaining nodes in the same instant.
        """
        if self._state != _OPEN or self._transport is None:
            return
        self._transport.pause_reading()
        self._drop_inbound()  # frames read but not started are not answered: clients retry
        if self._task is None:
            self._close_for_shutdown()
        else:
            self._shutting_down = True

    def _close_for_shutdown(self) -> None:
        retry_ms = random.randint(*SHUTDOWN_RETRY_MS)  # jitter, not security
        self.close(CloseCode.SHUTDOWN, f'{{"retry_ms":{retry_ms}}}')

    def close(self, code: CloseCode, reason: str) -> None:
        """Send a close frame and give the peer ``close_timeout`` to answer; never blocks."""
        if self._state != _OPEN or self._transport is None:
            return
        self._state = _CLOSING
        self._drop_inbound()
        # The close frame queues behind whatever the peer has not read yet; a peer that does
        # not read it in time is dropped, which frees its buffer.
        self._write_close(self._transport, code, reason)
        self._close_timer = asyncio.get_running_loop().call_later(
            self._node.close_timeout, self.abort
        )

    def _closed_by_peer(self, payload: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        if self._state == _OPEN:
            # Echo the peer's code, as RFC 6455 asks, then let the transport flush and close.
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else CloseCode.NORMAL
            self._write_close(transport, code if 1000 <= code < 5000 else CloseCode.NORMAL)
        self._shut(transport)

    def _fail(self, code: CloseCode, reason: str) -> None:
        """Close after a protocol violation: no more frames are read from this peer."""
        transport = self._transport
        if transport is None:
            return
        log.info(
            "closing a WebSocket of %s: %s", self.user_id, reason, extra={"conn_id": self.log_id}
        )
        if self._state == _OPEN:
            self._write_close(transport, code, reason)
        self._shut(transport)

    def _shut(self, transport: asyncio.Transport) -> None:
        """Read nothing more, let the transport flush and close; abort if it cannot in time."""
        self._state = _CLOSED
        self._drop_inbound()
        transport.close()
        if self._close_timer is None:
            self._close_timer = asyncio.get_running_loop().call_later(
                self._node.close_timeout, self.abort
            )

    def _drop_inbound(self) -> None:
        """Forget the messages not handled yet (their budget goes with them)."""
        self._inbound = None
        self._inbound_bytes = 0

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
