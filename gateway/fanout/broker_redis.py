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
does; other nodes' clients catch up from the store.

Every command that someone waits for (scripts, ``call``, subscriptions, ``ping``) goes through
one :class:`~storage.redis.breaker.CircuitBreaker` per broker: after ``breaker_failures``
timeouts or lost connections in a row, callers fail at once with ``Unavailable`` instead of each
waiting out a timeout while Redis is frozen; a probe goes through every ``breaker_cooldown``
seconds and the first answer closes it. The probe is a ``PING`` the broker sends by itself in the
background: the caller whose call would have been the probe is refused like the others, so no
op waits for a frozen Redis once the circuit is open. State and trips are in ``/metrics``
(``moosic_redis_circuit_state``, ``moosic_redis_circuit_trips_total``). Publishes do not wait for
Redis and are not refused: they stay queued on the pipelined connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from gateway.fanout.broker import Deliver, Recent, envelope, open_envelope
from gateway.metrics import Metrics
from storage.errors import Unavailable
from storage.redis.breaker import CircuitBreaker, CircuitOpen, State
from storage.redis.resp import ConnectionLost, RedisAddress, RespConnection, RespError

log = logging.getLogger(__name__)

MIN_BACKOFF = 0.05
MAX_BACKOFF = 5.0
SUBSCRIBE_BATCH = 1000

T = TypeVar("T")
_FAILURES = (OSError, TimeoutError, ConnectionLost, Unavailable)
"""What says Redis is not answering (an error reply is an answer: Redis is up)."""

PUBLISH_SCRIPT = b"""
local offset = tonumber(ARGV[3])
if offset > 0 then
  if redis.call('HGET', KEYS[2], 'epoch') ~= ARGV[4] then
    redis.call('DEL', KEYS[1])
    redis.call('HSET', KEYS[2], 'epoch', ARGV[4])
  end
  redis.call('ZADD', KEYS[1], offset, ARGV[5])
  local size = tonumber(ARGV[6])
  if redis.call('ZCARD', KEYS[1]) > size then
    redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -size - 1)
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
end
return redis.call('PUBLISH', ARGV[1], ARGV[2])
"""

RECENT_SCRIPT = b"""
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then return false end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 then return false end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local events = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES',
                          'LIMIT', 0, ARGV[2])
return {epoch, first[2], last[2], events}
"""


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
        url: str,
        *,
        prefix: str,
        metrics: Metrics,
        timeout: float = 5.0,
        window: int = 500,
        window_ttl: float = 300.0,
        breaker_failures: int = 5,
        breaker_cooldown: float = 2.0,
    ) -> None:
        self._address = RedisAddress.parse(url)
        self._window = str(window).encode()
        self._window_ttl = str(int(window_ttl * 1000)).encode()
        self._scripts: dict[bytes, bytes] = {}
        self.node_id = secrets.token_hex(6).encode()
        """Stamped on every message this node publishes, so it can skip its own."""
        self._publish_sha = hashlib.sha1(PUBLISH_SCRIPT).hexdigest().encode()
        self._reconnected: Callable[[], None] | None = None
        self._prefix = prefix
        self._prefix_bytes = prefix.encode()
        self._metrics = metrics
        self._timeout = timeout
        self._deliver: Deliver | None = None
        self._channels: set[str] = set()
        # Per channel, groups of futures waiting for a "subscribe" confirmation, oldest first.
        self._confirm: dict[str, deque[list[asyncio.Future[None]]]] = {}
        self._sub: RespConnection | None = None
        self._pub: RespConnection | None = None
        self._pub_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._failure_logged = False
        self.breaker = CircuitBreaker(
            "Redis", threshold=breaker_failures, cooldown=breaker_cooldown
        )
        """Shared by every caller of this client (limiter, presence, revocations, counters)."""
        self._probe: asyncio.Task[None] | None = None
        self._probe_timeout = min(timeout, breaker_cooldown)
        """A probe waits at most a cool-down: a frozen Redis is half-open no longer than open."""
        metrics.gauges["redis_circuit_state"] = lambda: self.breaker.state
        metrics.counters["redis_circuit_trips"] = lambda: self.breaker.trips
        metrics.counters["redis_circuit_rejected"] = lambda: self.breaker.rejected

    def _admit(self) -> None:
        """Let a call go to Redis, or raise ``CircuitOpen`` at once.

        When the breaker would let this call through as its probe (the cool-down is over), the
        broker sends its own ``PING`` as the probe in the background and refuses the call too:
        a caller never waits for a Redis that may still be frozen.
        """
        probing = self.breaker.state is not State.CLOSED
        self.breaker.check()
        if probing:
            if self._probe is None or self._probe.done():
                self._probe = asyncio.create_task(self._send_probe(), name="redis-breaker-probe")
            self.breaker.rejected += 1
            raise CircuitOpen("Redis is not answering (circuit open; probing); not waiting for it")

    async def _send_probe(self) -> None:
        try:
            async with asyncio.timeout(self._probe_timeout):
                conn = await self._publisher()
                await conn.command(b"PING")
        except RespError:
            self.breaker.success()  # an error reply is an answer: Redis is up
        except _FAILURES:
            self.breaker.failure()
        else:
            self.breaker.success()

    async def _guarded(self, run: Callable[[], Awaitable[T]], timeout: float | None) -> T:
        """Run one exchange with Redis through the breaker, within ``timeout`` seconds."""
        self._admit()
        try:
            async with asyncio.timeout(self._timeout if timeout is None else timeout):
                result = await run()
        except RespError:
            self.breaker.success()
            raise
        except _FAILURES:
            self.breaker.failure()
            raise
        self.breaker.success()
        return result

    def _key(self, channel: str) -> bytes:
        return self._prefix_bytes + channel.encode()

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
        for task in (self._task, self._probe):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for conn in (self._sub, self._pub):
            if conn is not None:
                conn.close()
        self._sub = self._pub = None

    async def ping(self) -> bool:
        if self._sub is None or self._sub.closed:
            return False
        try:
            return bool(await self.call(b"PING") == b"PONG")
        except (OSError, TimeoutError, ConnectionLost, RespError, Unavailable):
            return False

    # -- subscriber side -------------------------------------------------------------------

    async def _subscriber_loop(self) -> None:
        delays = backoff_delays()
        first = True
        while not self._closing:
            try:
                conn = await RespConnection.open(
                    self._address, timeout=self._timeout, on_push=self._on_push
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
                # Pub/sub drops what it carried while we were away: let the hub look for gaps.
                self._reconnected()
        await conn.wait_closed()

    def _on_push(self, reply: list[Any]) -> None:
        kind = reply[0]
        if kind == b"message":
            name = reply[1]
            if self._deliver is not None and name.startswith(self._prefix_bytes):
                try:
                    offset, epoch, node, payload = open_envelope(reply[2])
                except ValueError:
                    log.warning("ignoring a malformed message on %r", name[:200])
                    return
                if node != self.node_id:  # our own were delivered when published
                    self._deliver(name[len(self._prefix_bytes) :].decode(), offset, epoch, payload)
        elif kind == b"subscribe":
            channel = reply[1][len(self._prefix_bytes) :].decode()
            groups = self._confirm.get(channel)
            if groups:
                for future in groups.popleft():
                    if not future.done():
                        future.set_result(None)
                if not groups:
                    del self._confirm[channel]

    async def subscribe(self, channel: str) -> None:
        self._admit()  # while Redis is frozen, say so now rather than after the timeout
        self._channels.add(channel)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirm.setdefault(channel, deque()).append([future])
        if self._sub is not None:
            self._sub.send(b"SUBSCRIBE", self._key(channel))
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.shield(future)
        except TimeoutError:
            future.cancel()
            self.breaker.failure()
            raise Unavailable("Redis did not confirm the subscription in time") from None
        self.breaker.success()

    def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        if self._sub is not None:
            self._sub.send(b"UNSUBSCRIBE", self._key(channel))

    # -- publisher side --------------------------------------------------------------------

    async def _publisher(self) -> RespConnection:
        conn = self._pub
        if conn is not None and not conn.closed:
            return conn
        async with self._pub_lock:
            if self._pub is None or self._pub.closed:
                try:
                    self._pub = await RespConnection.open(self._address, timeout=self._timeout)
                except (OSError, TimeoutError, RespError) as exc:
                    raise Unavailable(f"Redis is unreachable: {exc}") from exc
            return self._pub

    async def script(
        self, script: bytes, keys: list[bytes], args: list[bytes], *, timeout: float | None = None
    ) -> Any:
        """Run a Lua script by its SHA1, loading it on first use (or after a Redis restart).

        Waits at most ``timeout`` seconds (the broker's timeout when None); refused at once
        with ``Unavailable`` while the breaker is open.
        """
        sha = self._scripts.get(script)
        if sha is None:
            sha = self._scripts[script] = hashlib.sha1(script).hexdigest().encode()
        number = str(len(keys)).encode()

        async def run() -> Any:
            conn = await self._publisher()
            try:
                return await conn.command(b"EVALSHA", sha, number, *keys, *args)
            except RespError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
                return await conn.command(b"EVAL", script, number, *keys, *args)

        return await self._guarded(run, timeout)

    async def call(self, *args: bytes | str, timeout: float | None = None) -> Any:
        """Run one command on the shared, pipelined publisher connection (through the breaker)."""

        async def run() -> Any:
            conn = await self._publisher()
            return await conn.command(*args)

        return await self._guarded(run, timeout)

    async def publish(self, channel: str, payload: bytes, offset: int = 0, epoch: str = "") -> None:
        """Deliver on this node at once, then send to Redis without waiting for the answer.

        Local subscribers do not wait for a Redis round trip, and the publisher is answered as
        soon as the message is stored; this node skips its own messages coming back from Redis.
        Commands go out in call order on one pipelined connection, so Redis sees a node's
        events in the order they were published.
        """
        if self._deliver is not None:
            self._deliver(channel, offset, epoch, payload)
        window, meta = self._window_keys(channel)
        args = (
            b"2",
            window,
            meta,
            self._key(channel),
            envelope(offset, epoch, self.node_id, payload),
            str(offset).encode(),
            epoch.encode(),
            payload,
            self._window,
            self._window_ttl,
        )
        try:
            conn = await self._publisher()
            future = conn.submit(b"EVALSHA", self._publish_sha, *args)
            if future is None:  # too many in flight: wait for room
                async with asyncio.timeout(self._timeout):
                    await self.script(PUBLISH_SCRIPT, list(args[1:3]), list(args[3:]))
                return
        except (OSError, TimeoutError, ConnectionLost, Unavailable, RespError) as exc:
            self._publish_failed(exc)
            return
        future.add_done_callback(lambda f: self._published(f, args))

    def _published(self, future: asyncio.Future[Any], args: tuple[bytes, ...]) -> None:
        exc = future.exception()
        if exc is None:
            self._failure_logged = False
            return
        if isinstance(exc, RespError) and str(exc).startswith("NOSCRIPT") and self._pub is not None:
            # First use on this Redis (or it restarted): send the script itself once.
            retry = self._pub.submit(b"EVAL", PUBLISH_SCRIPT, *args)
            if retry is not None:
                retry.add_done_callback(lambda f: self._published(f, args))
                return
        self._publish_failed(exc)

    def _publish_failed(self, exc: BaseException) -> None:
        self._metrics.broker_publish_failures += 1
        if self._pub is not None:
            self._pub.abort()
            self._pub = None
        if not self._failure_logged:
            log.warning("Redis publish failed (%s); delivered on this node only", exc)
            self._failure_logged = True

    async def recent(self, channel: str, since: int, limit: int) -> Recent | None:
        window, meta = self._window_keys(channel)
        try:
            async with asyncio.timeout(self._timeout):
                found = await self.script(
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
