"""The node's one Redis client: a shared pipelined connection behind one circuit breaker.

Everything on a node that asks Redis something and waits for the answer goes through one
:class:`RedisClient`: the broker's window reads and subscriptions, presence, hot counters, rate
limits and revocations. ``call`` runs one command and ``script`` one Lua script (by its SHA1,
loaded on first use or after a Redis restart), both on the same pipelined connection, which is
opened on first use and again after it is lost.

Every command that someone waits for goes through one
:class:`~storage.redis.breaker.CircuitBreaker` per client: after ``breaker_failures`` timeouts
or lost connections in a row, callers fail at once with ``Unavailable`` instead of each waiting
out a timeout while Redis is frozen; a probe goes through every ``breaker_cooldown`` seconds and
the first answer closes it. The probe is a ``PING`` the client sends by itself in the
background: the caller whose call would have been the probe is refused like the others, so no
op waits for a frozen Redis once the circuit is open. The gateway exports the breaker's state
and trips in ``/metrics`` (``moosic_redis_circuit_state``, ``moosic_redis_circuit_trips_total``).

The Lua scripts are files in ``lua/`` beside this module, read with :func:`lua`.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from importlib.resources import files
from typing import Any, TypeVar

from storage.errors import Unavailable
from storage.redis.breaker import CircuitBreaker, CircuitOpen, State
from storage.redis.resp import ConnectionLost, RedisAddress, RespConnection, RespError

T = TypeVar("T")
FAILURES = (OSError, TimeoutError, ConnectionLost, Unavailable)
"""What says Redis is not answering (an error reply is an answer: Redis is up)."""


def lua(name: str) -> bytes:
    """Return the source of ``storage/redis/lua/{name}.lua``."""
    return files(__package__).joinpath("lua", f"{name}.lua").read_bytes()


class RedisClient:
    """Commands and scripts on one shared, pipelined connection, through the circuit breaker."""

    cluster = False
    """True for :class:`storage.redis.cluster.ClusterClient` (keys are routed by slot)."""
    partitions = 1
    """How many tagged partitions presence and hot counters split their state into
    (:mod:`storage.redis.slots`): one on a single Redis, where keys carry no tag."""

    def __init__(
        self,
        url: str | RedisAddress,
        *,
        timeout: float = 5.0,
        breaker_failures: int = 5,
        breaker_cooldown: float = 2.0,
    ) -> None:
        self.address = url if isinstance(url, RedisAddress) else RedisAddress.parse(url)
        self.timeout = timeout
        """Seconds a call waits for its answer unless it says otherwise."""
        self.node_id = secrets.token_hex(6).encode()
        """This node's name in Redis: stamped on what it publishes, key of what it registers."""
        self.breaker = CircuitBreaker(
            "Redis", threshold=breaker_failures, cooldown=breaker_cooldown
        )
        """Shared by every caller of this client (broker, limiter, presence, revocations,
        counters)."""
        self._scripts: dict[bytes, bytes] = {}
        self._conn: RespConnection | None = None
        self._lock = asyncio.Lock()
        self._probe: asyncio.Task[None] | None = None
        self._probe_timeout = min(timeout, breaker_cooldown)
        """A probe waits at most a cool-down: a frozen Redis is half-open no longer than open."""
        self.observe: Callable[[float, str], None] | None = None
        """Called with (seconds, kind) after each answered round trip: ``command`` and
        ``script`` here (answers and error replies; not timeouts or lost connections), and
        ``publish`` for the broker's pipelined publishes (the gateway's
        ``moosic_redis_latency_seconds``)."""

    # -- the breaker -----------------------------------------------------------------------

    def admit(self) -> None:
        """Let a call go to Redis, or raise ``CircuitOpen`` at once.

        When the breaker would let this call through as its probe (the cool-down is over), the
        client sends its own ``PING`` as the probe in the background and refuses the call too:
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
                conn = await self.connection()
                await conn.command(b"PING")
        except RespError:
            self.breaker.success()  # an error reply is an answer: Redis is up
        except FAILURES:
            self.breaker.failure()
        else:
            self.breaker.success()

    async def _guarded(
        self, run: Callable[[], Awaitable[T]], timeout: float | None, kind: str = "command"
    ) -> T:
        """Run one exchange with Redis through the breaker, within ``timeout`` seconds."""
        self.admit()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                result = await run()
        except RespError:
            self.breaker.success()
            self._observe(started, kind)
            raise
        except FAILURES:
            self.breaker.failure()
            raise
        self.breaker.success()
        self._observe(started, kind)
        return result

    def _observe(self, started: float, kind: str) -> None:
        if self.observe is not None:
            self.observe(time.perf_counter() - started, kind)

    # -- the connection --------------------------------------------------------------------

    async def connection(self, key: bytes | None = None) -> RespConnection:
        """Return the shared connection, opening it first when there is none (or it was lost).

        ``key`` says which key the caller will touch (a cluster routes by it; one Redis has
        one connection for all). Raises ``Unavailable`` when Redis cannot be reached.
        """
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        async with self._lock:
            if self._conn is None or self._conn.closed:
                try:
                    self._conn = await RespConnection.open(self.address, timeout=self.timeout)
                except (OSError, TimeoutError, RespError) as exc:
                    raise Unavailable(f"Redis is unreachable: {exc}") from exc
            return self._conn

    def drop(self, key: bytes | None = None) -> None:
        """Abort the shared connection; the next use opens a fresh one."""
        if self._conn is not None:
            self._conn.abort()
            self._conn = None

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    async def ping_all(self) -> bool:
        """Whether Redis answers ``PING`` (every primary of a cluster)."""
        try:
            return bool(await self.call(b"PING") == b"PONG")
        except (*FAILURES, RespError):
            return False

    # -- commands --------------------------------------------------------------------------

    def sha(self, source: bytes) -> bytes:
        """The SHA1 a script is run by (``EVALSHA``), computed once per script."""
        sha = self._scripts.get(source)
        if sha is None:
            sha = self._scripts[source] = hashlib.sha1(source).hexdigest().encode()
        return sha

    async def script(
        self, source: bytes, keys: list[bytes], args: list[bytes], *, timeout: float | None = None
    ) -> Any:
        """Run a Lua script by its SHA1, loading it on first use (or after a Redis restart).

        Waits at most ``timeout`` seconds (the client's timeout when None); refused at once
        with ``Unavailable`` while the breaker is open.
        """
        sha = self.sha(source)
        number = str(len(keys)).encode()

        async def run() -> Any:
            conn = await self.connection()
            try:
                return await conn.command(b"EVALSHA", sha, number, *keys, *args)
            except RespError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
                return await conn.command(b"EVAL", source, number, *keys, *args)

        return await self._guarded(run, timeout, "script")

    async def call(self, *args: bytes | str, timeout: float | None = None) -> Any:
        """Run one command on the shared, pipelined connection (through the breaker)."""

        async def run() -> Any:
            conn = await self.connection()
            return await conn.command(*args)

        return await self._guarded(run, timeout)
