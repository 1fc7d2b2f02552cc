"""Cross-node fan-out through Redis pub/sub, and each channel's recent events in Redis.

Each node keeps one subscriber connection and one publisher connection. The node subscribes to
a Redis channel when its first local subscriber arrives and unsubscribes when the last leaves,
so Redis sends each message once per interested node, never once per socket. Both connections
reconnect by themselves with capped, jittered backoff; after a reconnect the subscriber
resubscribes every channel the node still needs in one batch.

A publish is one Lua script call: it adds the event to the channel's window (a sorted set by
offset, trimmed to ``window`` events, expiring ``ttl`` after the channel's last event) and
publishes it, atomically, so a node that notices a gap can always find the missing event in the
window. While Redis is unreachable a publish is delivered to this node's own subscribers only and
counted in ``moosic_broker_publish_failures_total``: cross-node fan-out degrades, nothing else
does. The node keeps each stored event Redis did not take (at most ``MAX_UNSENT``, the oldest
dropped first and counted) and publishes it again once Redis answers, so the window gets it and
the other nodes hear of it even when no later event would reveal the gap; meanwhile their
clients catch up from the store.

After a reconnect the subscriber resubscribes, waits until Redis has taken the subscriptions (a
``PING`` behind them on the same connection), and only then asks the hub to look for gaps: an
event published after that point comes by pub/sub, one published before is in the window or the
store.

The publisher connection, window reads and ``ping`` are the node's one
:class:`~storage.redis.client.RedisClient` (shared with presence, hot counters, rate limits and
revocations), so subscriptions go through its circuit breaker too: while it is open a
subscribe fails at once with ``Unavailable``. Publishes do not wait for Redis and are not
refused: they stay queued on the pipelined connection. The broker does not close the client:
whoever made it does, after the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from gateway.fanout.broker import Deliver, Recent, envelope, open_envelope
from gateway.metrics import Metrics
from storage.errors import Unavailable
from storage.redis.client import RedisClient, lua
from storage.redis.resp import ConnectionLost, RespConnection, RespError

log = logging.getLogger(__name__)

MIN_BACKOFF = 0.05
MAX_BACKOFF = 5.0
SUBSCRIBE_BATCH = 1000
MAX_UNSENT = 10_000
"""Stored events kept to publish again after Redis refused or missed them (oldest dropped)."""
REDIRECTS = ("MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN")
"""Error answers of a Redis Cluster that say: try this elsewhere, or again."""

PUBLISH_SCRIPT = lua("publish_and_remember")
RECENT_SCRIPT = lua("read_window")


def backoff_delays(low: float = MIN_BACKOFF, high: float = MAX_BACKOFF) -> Any:
    """Yield capped exponential delays with full jitter."""
    ceiling = low
    while True:
        yield random.uniform(low, ceiling)  # jitter, not security
        ceiling = min(high, ceiling * 2)


class RedisBroker:
    """:class:`gateway.fanout.broker.Broker` on Redis pub/sub."""

    def __init__(
        self,
        redis: RedisClient,
        *,
        prefix: str,
        metrics: Metrics,
        window: int = 500,
        window_ttl: float = 300.0,
    ) -> None:
        self._redis = redis
        self._window = str(window).encode()
        self._window_ttl = str(int(window_ttl * 1000)).encode()
        self.node_id = redis.node_id
        """Stamped on every message this node publishes, so it can skip its own."""
        self._publish_sha = redis.sha(PUBLISH_SCRIPT)
        self._reconnected: Callable[[], None] | None = None
        self._prefix = prefix
        self._prefix_bytes = prefix.encode()
        self._metrics = metrics
        self._timeout = redis.timeout
        self._deliver: Deliver | None = None
        self._channels: set[str] = set()
        # Per channel, groups of futures waiting for a "subscribe" confirmation, oldest first.
        self._confirm: dict[str, deque[list[asyncio.Future[None]]]] = {}
        self._sub: RespConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._failure_logged = False
        self._retries: set[asyncio.Task[None]] = set()
        self._unsent: OrderedDict[tuple[bytes, bytes], tuple[bytes, ...]] = OrderedDict()
        """(window key, offset) -> publish script arguments, oldest first."""
        self._resend: asyncio.Task[None] | None = None
        self._pongs: dict[int, deque[asyncio.Future[None]]] = {}
        """Per subscriber connection (by id), the PINGs sent behind subscriptions, oldest first."""

    publish_command = b"PUBLISH"
    """What the publish script publishes with (a cluster's broker uses SPUBLISH)."""

    def _key(self, channel: str) -> bytes:
        """The pub/sub name of ``channel``."""
        return self._prefix_bytes + channel.encode()

    def _channel_of(self, name: bytes) -> str | None:
        """The channel of a pub/sub name (None: not one of ours)."""
        if not name.startswith(self._prefix_bytes):
            return None
        return name[len(self._prefix_bytes) :].decode()

    def _window_keys(self, channel: str) -> tuple[bytes, bytes]:
        # One hash tag per channel, so both keys live in one Redis Cluster slot.
        tag = b"%s{%s}" % (self._prefix_bytes, channel.encode())
        return tag + b":w", tag + b":m"

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, deliver: Deliver, reconnected: Callable[[], None]) -> None:
        self._deliver = deliver
        self._reconnected = reconnected
        self._task = asyncio.create_task(self._subscriber_loop(), name="redis-subscriber")

    async def close(self) -> None:
        self._closing = True
        tasks = [t for t in (self._task, self._resend, *self._retries) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._sub is not None:
            self._sub.close()
        self._sub = None

    async def ping(self) -> bool:
        if self._sub is None or self._sub.closed:
            return False
        try:
            return bool(await self._redis.call(b"PING") == b"PONG")
        except (OSError, TimeoutError, ConnectionLost, RespError, Unavailable):
            return False

    # -- subscriber side -------------------------------------------------------------------

    async def _subscriber_loop(self) -> None:
        delays = backoff_delays()
        first = True
        while not self._closing:
            try:
                conn = await RespConnection.open(
                    self._redis.address, timeout=self._timeout, on_push=self._on_push
                )
            except (OSError, TimeoutError, RespError) as exc:
                log.warning("Redis subscriber cannot connect (%s); retrying", exc)
                await asyncio.sleep(next(delays))
                continue
            delays = backoff_delays()
            with contextlib.suppress(ConnectionLost):
                await self._serve(conn, first)
            first = False
            self._sub = None
            conn.abort()
            if not self._closing:
                log.warning("Redis subscriber connection lost; reconnecting")
                await asyncio.sleep(next(delays))

    async def _serve(self, conn: RespConnection, first: bool) -> None:
        """Resubscribe everything on a fresh connection, then wait until it is lost."""
        conn.subscribed = True
        # Everyone still waiting is satisfied by the batch below: one confirmation each.
        self._confirm = {
            channel: deque([[f for group in groups for f in group]])
            for channel, groups in self._confirm.items()
            if groups
        }
        names = [self._key(c) for c in self._channels]
        for start in range(0, len(names), SUBSCRIBE_BATCH):
            conn.send(b"SUBSCRIBE", *names[start : start + SUBSCRIBE_BATCH])
        self._sub = conn
        if not first:
            self._metrics.broker_reconnects += 1
            log.warning("Redis subscriber reconnected; resubscribed %d channels", len(names))
            if self._reconnected is not None:
                # Pub/sub drops what it carried while we were away: let the hub look for gaps,
                # once the subscriptions are in force.
                await self._barrier(conn)
                self._reconnected()
        await conn.wait_closed()

    async def _barrier(self, conn: RespConnection | None) -> None:
        """Wait until Redis has taken every command sent on ``conn`` so far (``ConnectionLost``
        when it is gone or does not answer in time)."""
        if conn is None or conn.closed:
            raise ConnectionLost("the subscriber connection is gone")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs.setdefault(id(conn), deque()).append(future)
        conn.send(b"PING")
        try:
            async with asyncio.timeout(self._timeout):
                await future
        except TimeoutError:
            raise ConnectionLost("Redis did not answer a PING on the subscriber") from None
        finally:
            pongs = self._pongs.get(id(conn))
            if pongs is not None and future in pongs:
                pongs.remove(future)
            if not pongs:
                self._pongs.pop(id(conn), None)

    def _ponged(self, conn_id: int) -> None:
        pongs = self._pongs.get(conn_id)
        if pongs:
            future = pongs.popleft()
            if not future.done():
                future.set_result(None)

    def _on_push(self, reply: list[Any]) -> None:
        kind = reply[0]
        if kind == b"message":
            self._on_message(reply[1], reply[2])
        elif kind == b"subscribe":
            self._confirmed(reply[1])
        elif kind == b"pong" and self._sub is not None:
            self._ponged(id(self._sub))

    def _on_message(self, name: bytes, message: bytes) -> None:
        channel = self._channel_of(name)
        if self._deliver is None or channel is None:
            return
        try:
            offset, epoch, node, stored_at, payload = open_envelope(message)
        except ValueError:
            log.warning("ignoring a malformed message on %r", name[:200])
            return
        if node != self.node_id:  # our own were delivered when published
            self._deliver(channel, offset, epoch, payload, stored_at)

    def _confirmed(self, name: bytes) -> None:
        """Redis confirmed a subscription: wake the oldest group waiting for it."""
        channel = self._channel_of(name)
        groups = self._confirm.get(channel) if channel is not None else None
        if groups:
            for future in groups.popleft():
                if not future.done():
                    future.set_result(None)
            if not groups:
                del self._confirm[channel]  # type: ignore[arg-type]

    async def subscribe(self, channel: str) -> None:
        self._redis.admit()  # while Redis is frozen, say so now rather than after the timeout
        self._channels.add(channel)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirm.setdefault(channel, deque()).append([future])
        self._send_subscribe(channel)
        await self._confirmation(future)

    def _send_subscribe(self, channel: str) -> None:
        if self._sub is not None:
            self._sub.send(b"SUBSCRIBE", self._key(channel))

    async def _confirmation(self, future: asyncio.Future[None]) -> None:
        """Wait for Redis to confirm a subscription, within the client's timeout."""
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.shield(future)
        except TimeoutError:
            future.cancel()
            self._redis.breaker.failure()
            raise Unavailable("Redis did not confirm the subscription in time") from None
        self._redis.breaker.success()

    def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        if self._sub is not None:
            self._sub.send(b"UNSUBSCRIBE", self._key(channel))

    # -- publisher side --------------------------------------------------------------------

    async def publish(
        self, channel: str, payload: bytes, offset: int = 0, epoch: str = "", stored_at: int = 0
    ) -> None:
        """Deliver on this node at once, then send to Redis without waiting for the answer.

        Local subscribers do not wait for a Redis round trip, and the publisher is answered as
        soon as the message is stored; this node skips its own messages coming back from Redis.
        Commands go out in call order on one pipelined connection, so Redis sees a node's
        events in the order they were published.
        """
        if self._deliver is not None:
            self._deliver(channel, offset, epoch, payload, stored_at)
        window, meta = self._window_keys(channel)
        args = (
            b"2",
            window,
            meta,
            self._key(channel),
            envelope(offset, epoch, self.node_id, payload, stored_at),
            str(offset).encode(),
            epoch.encode(),
            payload,
            self._window,
            self._window_ttl,
            self.publish_command,
        )
        try:
            conn = await self._redis.connection(window)
            started = time.perf_counter()
            future = conn.submit(b"EVALSHA", self._publish_sha, *args)
            if future is None:  # too many in flight: wait for room
                await self._publish_waiting(args)
                return
        except (OSError, TimeoutError, ConnectionLost, Unavailable, RespError) as exc:
            self._publish_failed(exc, args)
            return
        future.add_done_callback(lambda f: self._published(f, conn, args, started))

    async def _publish_waiting(self, args: tuple[bytes, ...]) -> None:
        """Publish through the client, waiting for the answer (and following redirects)."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.script(PUBLISH_SCRIPT, list(args[1:3]), list(args[3:]))
        except (OSError, TimeoutError, ConnectionLost, Unavailable, RespError) as exc:
            self._publish_failed(exc, args)

    def _published(
        self,
        future: asyncio.Future[Any],
        conn: RespConnection,
        args: tuple[bytes, ...],
        started: float,
    ) -> None:
        exc = future.exception()
        if exc is None:
            self._failure_logged = False
            observe = self._redis.observe
            if observe is not None:
                observe(time.perf_counter() - started, "publish")
            return
        if isinstance(exc, RespError) and str(exc).startswith("NOSCRIPT") and not conn.closed:
            # First use on this Redis (or it restarted): send the script itself once.
            retry = conn.submit(b"EVAL", PUBLISH_SCRIPT, *args)
            if retry is not None:
                retry.add_done_callback(lambda f: self._published(f, conn, args, started))
                return
        if isinstance(exc, RespError) and str(exc).startswith(REDIRECTS):
            # A cluster moved the channel's slot: the client follows it (and reads the map).
            task = asyncio.create_task(self._publish_waiting(args))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)
            return
        self._publish_failed(exc, args)

    def _publish_failed(self, exc: BaseException, args: tuple[bytes, ...]) -> None:
        self._metrics.broker_publish_failures += 1
        self._redis.drop(args[1])
        if not self._failure_logged:
            log.warning("Redis publish failed (%s); delivered on this node only for now", exc)
            self._failure_logged = True
        if args[5] == b"0" or self._closing:
            return  # ephemeral (typing, receipts): not worth sending late
        self._unsent[(args[1], args[5])] = args
        if len(self._unsent) > MAX_UNSENT:
            self._unsent.popitem(last=False)
            self._metrics.broker_unsent_dropped += 1
        if self._resend is None or self._resend.done():
            self._resend = asyncio.create_task(self._resend_unsent(), name="redis-resend")

    async def _resend_unsent(self) -> None:
        """Publish again, oldest first, the stored events Redis did not take, until none is left."""
        delays = backoff_delays(MIN_BACKOFF * 4)
        while self._unsent and not self._closing:
            await asyncio.sleep(next(delays))
            while self._unsent:
                key, args = next(iter(self._unsent.items()))
                try:
                    async with asyncio.timeout(self._timeout):
                        await self._redis.script(PUBLISH_SCRIPT, list(args[1:3]), list(args[3:]))
                except (OSError, TimeoutError, ConnectionLost, Unavailable, RespError) as exc:
                    log.debug("Redis still refuses the publish (%s); trying again", exc)
                    break
                if self._unsent.get(key) is args:
                    del self._unsent[key]
                self._metrics.broker_republished += 1
            else:
                log.warning("Redis took again the events it had missed")

    async def recent(self, channel: str, since: int, limit: int) -> Recent | None:
        window, meta = self._window_keys(channel)
        try:
            async with asyncio.timeout(self._timeout):
                found = await self._redis.script(
                    RECENT_SCRIPT, [window, meta], [str(since).encode(), str(limit).encode()]
                )
        except (OSError, TimeoutError, ConnectionLost, Unavailable, RespError) as exc:
            log.warning("Redis window read failed (%s); falling back to the store", exc)
            return None
        if not isinstance(found, list):
            return None
        epoch, first, last, flat = found
        events = [(int(float(flat[i + 1])), bytes(flat[i])) for i in range(0, len(flat), 2)]
        return Recent(
            epoch=epoch.decode(), first=int(float(first)), last=int(float(last)), events=events
        )
