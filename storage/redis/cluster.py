"""The node's Redis client on a Redis Cluster (ElastiCache cluster mode): commands by slot.

:class:`ClusterClient` is a :class:`~storage.redis.client.RedisClient` whose commands and scripts
go to the primary that serves their key's slot (:mod:`storage.redis.slots`), each primary on one
shared, pipelined connection. It learns the slots with ``CLUSTER SLOTS`` from any node it knows
(the seeds of ``MOOSIC_REDIS_URL``, ``redis://h1:p1,h2:p2``, or ElastiCache's configuration
endpoint, then every primary it has seen), and learns them again:

- on ``MOVED`` (the slot's new owner is used at once, the whole map is read again behind it);
- when a connection to a node is lost or cannot be opened (a primary died: its replica takes
  over within ``cluster-node-timeout``, and the node keeps asking until the map says so);
- every ``refresh_interval`` seconds.

``ASK`` (a slot half-way through a migration) sends ``ASKING`` and the command to the node named,
without touching the map; ``TRYAGAIN`` and ``CLUSTERDOWN`` are tried again after a short wait,
within the call's timeout. Every attempt of a call goes through the one circuit breaker of the
client, as on a single Redis. Callers that keep state per shard (the sharded subscriber of
:class:`gateway.fanout.broker_cluster.ClusterBroker`) register in ``on_topology`` and are told
whenever a slot changes owner.

Commands that touch several keys (``MGET``, scripts) must keep them in one slot: callers tag
their keys (:func:`storage.redis.slots.partition_prefix`) and group multi-key reads per slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from storage.errors import Unavailable
from storage.redis.client import FAILURES, RedisClient
from storage.redis.resp import ConnectionLost, RedisAddress, RespConnection, RespError
from storage.redis.slots import SLOTS, key_slot

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
"""Redirects and retries one call may take before it gives up with ``Unavailable``."""
RETRY_PAUSE = 0.05
"""Seconds before trying again after TRYAGAIN / CLUSTERDOWN (times the attempt number)."""
KEYLESS = frozenset({b"PING", b"INFO", b"CLUSTER", b"TIME", b"SCRIPT", b"ECHO"})


def parse_seeds(url: str) -> list[RedisAddress]:
    """Every node named in ``redis[s]://[user:pass@]h1:p1,h2:p2[/db]`` (the auth applies to all)."""
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss"}:
        raise ValueError("a Redis Cluster URL starts with redis:// or rediss://")
    auth, _, hosts = parts.netloc.rpartition("@")
    seeds = []
    for host in hosts.split(","):
        if not host:
            raise ValueError("a Redis Cluster URL names host:port pairs separated by commas")
        prefix = f"{auth}@" if auth else ""
        seeds.append(RedisAddress.parse(f"{parts.scheme}://{prefix}{host}"))
    return seeds


def _where(text: str, template: RedisAddress) -> tuple[int, RedisAddress]:
    """The slot and the node of a ``MOVED``/``ASK`` error: ``MOVED 3999 127.0.0.1:6381``."""
    _kind, slot, node = text.split(" ", 2)
    host, _, port = node.strip().rpartition(":")
    return int(slot), dataclasses.replace(template, host=host or template.host, port=int(port))


class ClusterClient(RedisClient):
    """Commands, scripts and connections routed by slot over a Redis Cluster."""

    cluster = True

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        breaker_failures: int = 5,
        breaker_cooldown: float = 2.0,
        partitions: int = 16,
        refresh_interval: float = 5.0,
    ) -> None:
        self.seeds = parse_seeds(url)
        super().__init__(
            self.seeds[0],
            timeout=timeout,
            breaker_failures=breaker_failures,
            breaker_cooldown=breaker_cooldown,
        )
        self.partitions = partitions
        self.refresh_interval = refresh_interval
        self._template = self.seeds[0]
        self._slots: list[RedisAddress | None] = [None] * SLOTS
        self.primaries: list[RedisAddress] = []
        """The primaries serving slots, as the last map said."""
        self.topology_version = 0
        """Goes up every time a slot changed owner (or the first map arrived)."""
        self.refreshes = 0
        """How many times the map was read (exported as moosic_redis_cluster_refreshes_total)."""
        self.redirects = 0
        """MOVED and ASK answers followed (exported as moosic_redis_cluster_redirects_total)."""
        self.on_topology: list[Callable[[], None]] = []
        """Told (synchronously) after every map in which some slot changed owner."""
        self._conns: dict[RedisAddress, RespConnection] = {}
        self._opening: dict[RedisAddress, asyncio.Lock] = {}
        self._refreshing: asyncio.Task[None] | None = None
        self._periodic: asyncio.Task[None] | None = None
        self._watchers: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- the map ---------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether every slot has an owner in the current map."""
        return bool(self.primaries) and all(s is not None for s in self._slots)

    def owner(self, key: bytes) -> RedisAddress:
        """The primary serving ``key``'s slot in the current map (``Unavailable``: none)."""
        node = self._slots[key_slot(key)]
        if node is None:
            raise Unavailable("Redis Cluster: no node serves this key's slot (yet)")
        return node

    async def ensure_topology(self) -> None:
        """Read the map when there is none yet (and start the periodic refresh)."""
        if self._periodic is None and not self._closing:
            self._periodic = asyncio.create_task(self._refresh_forever(), name="redis-topology")
        if not self.primaries:
            await self.refresh()

    def schedule_refresh(self) -> None:
        """Read the map again in the background (at most one read at a time)."""
        if self._closing:
            return
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._load(), name="redis-topology-refresh")
            self._refreshing.add_done_callback(_quiet)

    async def refresh(self) -> None:
        """Read the map now (joining a read under way); ``Unavailable`` when no node answers."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._load(), name="redis-topology-refresh")
            self._refreshing.add_done_callback(_quiet)
        await asyncio.shield(self._refreshing)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await self.refresh()
            except FAILURES as exc:
                log.warning("Redis Cluster: cannot read the slot map (%s)", exc)

    async def _load(self) -> None:
        candidates = list(dict.fromkeys([*self.primaries, *self.seeds]))
        random.shuffle(candidates)  # spread the reads; any node knows the whole map
        last: BaseException | None = None
        for node in candidates:
            try:
                async with asyncio.timeout(self.timeout):
                    conn = await self._node(node, refresh_on_failure=False)
                    reply = await conn.command(b"CLUSTER", b"SLOTS")
            except (*FAILURES, RespError) as exc:
                last = exc
                continue
            if self._apply(reply, node):
                return
        raise Unavailable(f"Redis Cluster: no node answered CLUSTER SLOTS ({last})")

    def _apply(self, reply: Any, asked: RedisAddress) -> bool:
        """Take a ``CLUSTER SLOTS`` answer; False when it does not cover every slot."""
        slots: list[RedisAddress | None] = [None] * SLOTS
        primaries: dict[RedisAddress, None] = {}
        for entry in reply or ():
            low, high, primary = int(entry[0]), int(entry[1]), entry[2]
            host = bytes(primary[0]).decode() or asked.host
            node = dataclasses.replace(self._template, host=host, port=int(primary[1]))
            primaries[node] = None
            slots[low : high + 1] = [node] * (high - low + 1)
        self.refreshes += 1
        if any(s is None for s in slots):
            return False  # a node that lost its view (failing over): ask another
        changed = slots != self._slots
        self._slots = slots
        self.primaries = list(primaries)
        for node in [n for n in self._conns if n not in primaries]:
            self._conns.pop(node).close()  # a replica now, or gone
        if changed:
            self.topology_version += 1
            for told in list(self.on_topology):
                try:
                    told()
                except Exception:  # one listener's bug must not stop the others
                    log.exception("Redis Cluster: a topology listener failed")
        return True

    # -- connections -----------------------------------------------------------------------

    async def _node(self, node: RedisAddress, *, refresh_on_failure: bool = True) -> RespConnection:
        conn = self._conns.get(node)
        if conn is not None and not conn.closed:
            return conn
        lock = self._opening.setdefault(node, asyncio.Lock())
        async with lock:
            conn = self._conns.get(node)
            if conn is not None and not conn.closed:
                return conn
            try:
                conn = await RespConnection.open(node, timeout=self.timeout)
            except (OSError, TimeoutError, RespError) as exc:
                if refresh_on_failure:
                    self.schedule_refresh()
                raise Unavailable(
                    f"Redis node {node.host}:{node.port} is unreachable: {exc}"
                ) from exc
            self._conns[node] = conn
            watcher = asyncio.create_task(self._watch(node, conn), name="redis-node-watch")
            self._watchers.add(watcher)
            watcher.add_done_callback(self._watchers.discard)
            return conn

    async def _watch(self, node: RedisAddress, conn: RespConnection) -> None:
        await conn.wait_closed()
        if self._conns.get(node) is conn:
            del self._conns[node]
        if not self._closing:
            self.schedule_refresh()  # a primary may have died: its replica takes over

    async def connection(self, key: bytes | None = None) -> RespConnection:
        """The pipelined connection to the primary of ``key``'s slot (any primary for None)."""
        await self.ensure_topology()
        node = self.owner(key) if key is not None else random.choice(self.primaries)
        return await self._node(node)

    def drop(self, key: bytes | None = None) -> None:
        """Abort the connection to ``key``'s primary (every connection for None)."""
        if key is None:
            for conn in list(self._conns.values()):
                conn.abort()
            self._conns.clear()
            return
        node = self._slots[key_slot(key)]
        dropped = self._conns.pop(node, None) if node is not None else None
        if dropped is not None:
            dropped.abort()

    async def close(self) -> None:
        self._closing = True
        tasks = [t for t in (self._periodic, self._refreshing) if t is not None]
        tasks += list(self._watchers)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
        await super().close()

    async def ping_all(self) -> bool:
        """Whether the map is whole and every primary in it answers ``PING``."""
        try:
            await self.ensure_topology()
            if not self.ready:
                return False
            async with asyncio.timeout(self.timeout):
                for node in list(self.primaries):
                    conn = await self._node(node)
                    if await conn.command(b"PING") != b"PONG":
                        return False
        except (*FAILURES, RespError):
            return False
        return True

    # -- commands --------------------------------------------------------------------------

    async def _routed(
        self, key: bytes | None, args: tuple[bytes, ...], source: bytes | None
    ) -> Any:
        """Run one command on the owner of ``key``, following redirects (see the module)."""
        node: RedisAddress | None = None
        asking = False
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if node is None:
                await self.ensure_topology()
                node = self.owner(key) if key is not None else random.choice(self.primaries)
            conn = await self._node(node)
            try:
                if asking:
                    first = conn.submit(b"ASKING")
                    if first is not None:
                        first.add_done_callback(_quiet)
                return await conn.command(*args)
            except RespError as exc:
                text = str(exc)
                if text.startswith("NOSCRIPT") and source is not None:
                    args = (b"EVAL", source, *args[2:])
                    continue
                if text.startswith("MOVED "):
                    self.redirects += 1
                    slot, node = _where(text, self._template)
                    self._slots[slot] = node
                    asking = False
                    self.schedule_refresh()
                    continue
                if text.startswith("ASK "):
                    self.redirects += 1
                    _slot, node = _where(text, self._template)
                    asking = True
                    continue
                if text.startswith(("TRYAGAIN", "CLUSTERDOWN")):
                    if text.startswith("CLUSTERDOWN"):
                        self.schedule_refresh()
                    await asyncio.sleep(RETRY_PAUSE * attempt)
                    node, asking = None, False
                    continue
                raise
            except ConnectionLost:
                self.schedule_refresh()
                raise
        raise Unavailable("Redis Cluster: too many redirects for one command")

    async def call(self, *args: bytes | str, timeout: float | None = None) -> Any:
        """Run one command on the primary of its key (``args[1]``; keyless commands: any)."""
        encoded = tuple(a.encode() if isinstance(a, str) else a for a in args)
        keyed = len(encoded) > 1 and encoded[0].upper() not in KEYLESS
        key = encoded[1] if keyed else None
        return await self._guarded(lambda: self._routed(key, encoded, None), timeout)

    async def script(
        self, source: bytes, keys: list[bytes], args: list[bytes], *, timeout: float | None = None
    ) -> Any:
        """Run a Lua script on the primary of its first key (all its keys share one slot)."""
        sha = self.sha(source)
        command = (b"EVALSHA", sha, str(len(keys)).encode(), *keys, *args)
        key = keys[0] if keys else None
        return await self._guarded(lambda: self._routed(key, command, source), timeout, "script")


def _quiet(future: asyncio.Future[Any]) -> None:
    """Retrieve a background future's outcome (its failure is dealt with elsewhere)."""
    if not future.cancelled():
        with contextlib.suppress(BaseException):
            future.exception()
