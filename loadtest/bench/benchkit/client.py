"""The load generator's WebSocket client (picows on uvloop), the same for every target."""

import asyncio
import re
import time
from array import array
from collections.abc import Callable, Sequence

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from .errors import BenchError, ConnectionClosedError, SomeFailedError
from .wire import Wire

_STAMP = re.compile(rb'"bts":\s*(\d+)')
_SENDER = re.compile(rb'"s":\s*(\d+)')
_SAMPLES_KEPT = 5


def now_us() -> int:
    """Monotonic microseconds; publisher and subscribers share this process and clock."""
    return time.perf_counter_ns() // 1000


def message(sender: int, padding: bytes) -> bytes:
    """A chat message's data object carrying its send time (µs) and its sender's index."""
    return b'{"bts":%d,"s":%d,"p":"%s"}' % (now_us(), sender, padding)


def padding_for(size: int) -> bytes:
    """Padding that makes message() about size bytes long."""
    return b"x" * max(0, size - len(message(0, b"")))


class Sink:
    """Counts what arrives on every connection; records latency while recording is on."""

    def __init__(self) -> None:
        self.delivered = 0
        self.acks = 0
        self.errors = 0
        self.disconnects = 0
        self.notes: list[str] = []
        self.latencies_us = array("q")
        self.recording = False

    def event(self, conn: "Conn", payload: bytes) -> None:
        """Count one pushed event; take its latency from the stamp in its data."""
        self.delivered += 1
        if self.recording:
            stamp = _STAMP.search(payload)
            if stamp is not None:
                self.latencies_us.append(now_us() - int(stamp[1]))

    def ack(self, ok: bool, detail: str) -> None:
        """Count a reply to a publish (ok) or an error reply."""
        if ok:
            self.acks += 1
        else:
            self.errors += 1
            self.note(detail)

    def note(self, text: str) -> None:
        """Keep the first few distinct problems for the report."""
        if len(self.notes) < _SAMPLES_KEPT and text not in self.notes:
            self.notes.append(text)

    def start_recording(self) -> None:
        """Forget earlier latencies and record from now on."""
        self.latencies_us = array("q")
        self.recording = True

    def stop_recording(self) -> "array[int]":
        """Stop recording and return the latencies recorded."""
        self.recording = False
        return self.latencies_us


class ChatSink(Sink):
    """A Sink that also tells deliveries to the other room member from echoes to the sender."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0
        self.echoes = 0

    def event(self, conn: "Conn", payload: bytes) -> None:
        """Count as an echo when the event's sender index is the receiving connection's."""
        sender = _SENDER.search(payload)
        if sender is not None and int(sender[1]) == conn.index:
            self.echoes += 1
            return
        super().event(conn, payload)


class Conn(WSListener):
    """One WebSocket connection speaking its target's wire protocol."""

    def __init__(self, wire: Wire, token: str, sink: Sink, index: int) -> None:
        super().__init__()
        self.wire = wire
        self.token = token
        self.sink = sink
        self.index = index
        self.transport: WSTransport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending: dict[int, asyncio.Future[None]] = {}
        self.next_id = 0
        self.closed = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        """Let the adapter start its handshake."""
        self.transport = transport
        self.wire.on_connected(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Events go to the sink; everything else to the adapter."""
        if frame.msg_type is WSMsgType.TEXT:
            payload = frame.get_payload_as_bytes()
            if self.wire.is_event(payload):
                self.sink.event(self, payload)
            else:
                self.wire.on_control(self, payload)
        elif frame.msg_type is WSMsgType.CLOSE:
            code = frame.get_close_code()
            if code is not WSCloseCode.OK:
                self.sink.note(f"closed by the server: {code.value} {frame.get_close_reason()}")
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        """Fail whatever still waits on this connection."""
        self.closed = True
        self.sink.disconnects += 1
        self._fail(ConnectionClosedError())

    def _fail(self, error: Exception) -> None:
        if not self.ready.done():
            self.ready.set_exception(error)
        for waiter in self.pending.values():
            if not waiter.done():
                waiter.set_exception(error)
        self.pending.clear()

    def send(self, frame: bytes) -> None:
        """Send one text frame unless the connection is gone."""
        if self.transport is not None and not self.closed:
            self.transport.send(WSMsgType.TEXT, frame)

    def set_ready(self) -> None:
        """The server accepted the connection."""
        if not self.ready.done():
            self.ready.set_result(None)

    def refuse(self, reason: str) -> None:
        """The server refused or dropped the connection."""
        self.sink.note(reason)
        self._fail(BenchError(reason))

    def reply(self, req_id: int, ok: bool, detail: str) -> None:
        """Wake the request waiting on req_id, or count a publish's reply."""
        waiter = self.pending.pop(req_id, None)
        if waiter is None:
            self.sink.ack(ok, detail)
        elif not waiter.done():
            if ok:
                waiter.set_result(None)
            else:
                waiter.set_exception(BenchError(detail))

    def _take_id(self) -> int:
        self.next_id += 1
        return self.next_id

    async def join(self, channel: str, timeout_s: float = 10.0) -> None:
        """Subscribe to channel and wait for the server's reply."""
        req_id = self._take_id()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending[req_id] = waiter
        self.send(self.wire.join_frame(req_id, channel))
        await asyncio.wait_for(waiter, timeout_s)

    def publish(self, channel: str, data: bytes) -> None:
        """Publish without waiting; the reply is counted by the sink."""
        self.send(self.wire.publish_frame(self._take_id(), channel, data))

    def close(self) -> None:
        """Drop the connection."""
        if self.transport is not None and not self.closed:
            self.transport.disconnect()


async def open_many(
    wire: Wire, port: int, tokens: Sequence[str], sink: Sink, concurrency: int, start_index: int = 0
) -> tuple[list[Conn], list[str]]:
    """Open one connection per token, at most `concurrency` handshakes at a time.

    A connection counts as open once the server has authenticated it. Returns the open
    connections and one error text per connection that failed.
    """
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int, token: str) -> Conn:
        async with gate:
            conn = Conn(wire, token, sink, index)
            await ws_connect(
                lambda: conn,
                wire.ws_url(port, token),
                websocket_handshake_timeout=10,
                read_buffer_init_size=4096,
            )
            try:
                await asyncio.wait_for(conn.ready, 10)
            except BaseException:
                conn.close()
                raise
            return conn

    outcomes = await asyncio.gather(
        *(one(start_index + i, token) for i, token in enumerate(tokens)), return_exceptions=True
    )
    conns = [o for o in outcomes if isinstance(o, Conn)]
    errors = [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    return conns, errors


async def open_all(
    wire: Wire, port: int, tokens: Sequence[str], sink: Sink, concurrency: int, start_index: int = 0
) -> list[Conn]:
    """Like open_many, but every connection must open."""
    conns, errors = await open_many(wire, port, tokens, sink, concurrency, start_index)
    if errors:
        close_all(conns)
        raise SomeFailedError("connections", len(errors), len(tokens), errors[0])
    return conns


async def join_all(
    conns: Sequence[Conn], channel_of: Callable[[Conn], str], concurrency: int
) -> None:
    """Subscribe every connection to its channel, `concurrency` requests at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(conn: Conn) -> None:
        async with gate:
            await conn.join(channel_of(conn))

    outcomes = await asyncio.gather(*(one(c) for c in conns), return_exceptions=True)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    if errors:
        raise SomeFailedError(
            "subscriptions", len(errors), len(conns), f"{type(errors[0]).__name__}: {errors[0]}"
        )


def close_all(conns: Sequence[Conn]) -> None:
    """Drop every connection."""
    for conn in conns:
        conn.close()
