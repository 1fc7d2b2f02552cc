"""Cross-node fan-out on a Redis Cluster: sharded pub/sub, one subscriber connection per shard.

:class:`ClusterBroker` is the :class:`~gateway.fanout.broker_redis.RedisBroker` (same publish
script, same recent window, same local-first delivery) on a
:class:`~storage.redis.cluster.ClusterClient`, with these differences:

- A channel's pub/sub name is ``{prefix}{{channel}}``: it shares the hash tag of its window keys,
  so the publish script (window + ``SPUBLISH``) runs in one slot, on the shard that owns it.
  ``SPUBLISH`` reaches only that shard's subscribers (classic ``PUBLISH`` is copied to every
  shard of a cluster).
- The node keeps one subscriber connection per primary that owns a channel it needs (not one
  per channel) and sends ``SSUBSCRIBE`` there, one command per slot (Redis refuses shard
  channels of several slots in one command).
- When a slot changes owner (a failover, a migration: the client's map says so, or the old
  owner sends ``sunsubscribe``, or a subscriber connection is lost), the node subscribes every
  channel it needs again on the new owner, waits until each shard has taken the subscriptions
  (a ``PING`` behind them), then asks the hub to look for gaps, as after a Redis restart:
  pub/sub dropped what it carried meanwhile, the window or the store has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from typing import Any

from gateway.fanout.broker import Deliver
from gateway.fanout.broker_redis import RedisBroker, backoff_delays
from gateway.metrics import Metrics
from storage.errors import Unavailable
from storage.redis.client import FAILURES
from storage.redis.cluster import ClusterClient
from storage.redis.resp import RedisAddress, RespConnection, RespError
from storage.redis.slots import key_slot

log = logging.getLogger(__name__)


class ClusterBroker(RedisBroker):
    """:class:`gateway.fanout.broker.Broker` on a Redis Cluster's sharded pub/sub."""

    publish_command = b"SPUBLISH"

    def __init__(
        self,
        redis: ClusterClient,
        *,
        prefix: str,
        metrics: Metrics,
        window: int = 500,
        window_ttl: float = 300.0,
    ) -> None:
        super().__init__(
            redis, prefix=prefix, metrics=metrics, window=window, window_ttl=window_ttl
        )
        self._cluster = redis
        self._subs: dict[RedisAddress, RespConnection] = {}
        """One subscriber connection per primary that owns a channel this node needs."""
        self._placed: dict[str, RedisAddress] = {}
        """Where each needed channel is subscribed now (absent: not yet, or lost)."""
        self._opening: dict[RedisAddress, asyncio.Lock] = {}
        self._wake = asyncio.Event()
        self._lost = False
        """Some channel lost its subscription since the last placement: look for gaps after."""
        self._watchers: set[asyncio.Task[None]] = set()
        redis.on_topology.append(self._topology_changed)

    def _key(self, channel: str) -> bytes:
        return b"%s{%s}" % (self._prefix_bytes, channel.encode())

    def _channel_of(self, name: bytes) -> str | None:
        if not name.startswith(self._prefix_bytes + b"{") or not name.endswith(b"}"):
            return None
        return name[len(self._prefix_bytes) + 1 : -1].decode()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, deliver: Deliver, reconnected: Callable[[], None]) -> None:
        self._deliver = deliver
        self._reconnected = reconnected
        self._task = asyncio.create_task(self._placer(), name="redis-cluster-subscriber")
        self._wake.set()

    async def close(self) -> None:
        self._closing = True
        with contextlib.suppress(ValueError):
            self._cluster.on_topology.remove(self._topology_changed)
        for task in list(self._watchers):
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        await super().close()
        for conn in self._subs.values():
            conn.close()
        self._subs.clear()

    async def ping(self) -> bool:
        """Ready when every needed channel is subscribed on a live connection to its owner
        and every primary answers."""
        for channel in self._channels:
            node = self._placed.get(channel)
            conn = self._subs.get(node) if node is not None else None
            if conn is None or conn.closed:
                return False
        return await self._cluster.ping_all()

    # -- placing subscriptions -------------------------------------------------------------

    def _topology_changed(self) -> None:
        self._wake.set()

    async def _placer(self) -> None:
        """Keep every needed channel subscribed on its owner, forever."""
        delays = backoff_delays()
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._cluster.ensure_topology()
                moved, shards = await self._place()
                if moved:
                    await self._taken(shards)
            except (*FAILURES, RespError) as exc:
                log.warning("Redis Cluster subscriber: cannot subscribe yet (%s); retrying", exc)
                self._wake.set()
                await asyncio.sleep(next(delays))
                continue
            delays = backoff_delays()
            if moved and self._reconnected is not None:
                self._metrics.broker_reconnects += 1
                log.warning("Redis Cluster subscriber: resubscribed %d channels", moved)
                self._reconnected()  # pub/sub dropped what it carried meanwhile: find gaps

    async def _taken(self, shards: set[RedisAddress]) -> None:
        """Wait until every shard in ``shards`` has taken the subscriptions sent to it."""
        try:
            for node in shards:
                await self._barrier(self._subs.get(node))
        except BaseException:
            self._lost = True  # look for gaps after the next placement instead
            raise

    async def _place(self) -> tuple[int, set[RedisAddress]]:
        """Subscribe what is not where the map says.

        Returns how many channels are subscribed when some had lost their subscription or
        moved (the hub then looks for gaps), else 0: a channel placed for the first time has
        nothing to recover; and the shards subscriptions were sent to.
        """
        by_slot: dict[tuple[RedisAddress, int], list[bytes]] = defaultdict(list)
        relocated = 0
        for channel in list(self._channels):
            name = self._key(channel)
            owner = self._cluster.owner(name)
            where = self._placed.get(channel)
            conn = self._subs.get(where) if where is not None else None
            if where == owner and conn is not None and not conn.closed:
                continue
            if where is not None:
                relocated += 1
                if conn is not None and not conn.closed:
                    conn.send(b"SUNSUBSCRIBE", name)  # the slot left that shard
                del self._placed[channel]
            by_slot[(owner, key_slot(name))].append(name)
        lost, self._lost = self._lost, False
        shards: set[RedisAddress] = set()
        try:
            for (owner, _slot), names in by_slot.items():
                conn = await self._subscriber(owner)
                conn.send(b"SSUBSCRIBE", *names)
                shards.add(owner)
                for name in names:
                    placed = self._channel_of(name)
                    if placed is not None and placed in self._channels:
                        self._placed[placed] = owner
        except BaseException:
            self._lost = self._lost or lost or relocated > 0
            raise
        moved = len(self._channels) if (relocated or lost) else 0
        return moved, shards

    async def _subscriber(self, node: RedisAddress) -> RespConnection:
        conn = self._subs.get(node)
        if conn is not None and not conn.closed:
            return conn
        lock = self._opening.setdefault(node, asyncio.Lock())
        async with lock:
            conn = self._subs.get(node)
            if conn is not None and not conn.closed:
                return conn
            try:
                conn = await RespConnection.open(
                    node, timeout=self._timeout, on_push=partial(self._on_shard_push, node)
                )
            except (OSError, TimeoutError, RespError) as exc:
                self._cluster.schedule_refresh()
                raise Unavailable(f"Redis node {node.host}:{node.port} is unreachable") from exc
            conn.subscribed = True
            self._subs[node] = conn
            watcher = asyncio.create_task(self._watch(node, conn), name="redis-shard-subscriber")
            self._watchers.add(watcher)
            watcher.add_done_callback(self._watchers.discard)
            return conn

    async def _watch(self, node: RedisAddress, conn: RespConnection) -> None:
        await conn.wait_closed()
        if self._subs.get(node) is conn:
            del self._subs[node]
        if self._closing:
            return
        for channel in [c for c, where in self._placed.items() if where == node]:
            del self._placed[channel]
            self._lost = True
        if self._lost:
            log.warning("Redis Cluster subscriber: lost the connection to %s", node.port)
        self._cluster.schedule_refresh()
        self._wake.set()

    def _on_shard_push(self, node: RedisAddress, reply: list[Any]) -> None:
        kind = reply[0]
        if kind == b"smessage":
            self._on_message(reply[1], reply[2])
        elif kind == b"ssubscribe":
            self._confirmed(reply[1])
        elif kind == b"pong":
            conn = self._subs.get(node)
            if conn is not None:
                self._ponged(id(conn))
        elif kind == b"sunsubscribe":
            channel = self._channel_of(reply[1]) if reply[1] else None
            if channel is not None and self._placed.get(channel) == node:
                # The shard dropped it (its slot moved away): place it again where it is now.
                del self._placed[channel]
                self._lost = True
                self._cluster.schedule_refresh()
                self._wake.set()
        elif kind == b"error":
            log.warning("Redis Cluster subscriber: %s", reply[1])
            self._cluster.schedule_refresh()
            for channel in [c for c, where in self._placed.items() if where == node]:
                del self._placed[channel]
            self._lost = True
            self._wake.set()

    # -- the broker API --------------------------------------------------------------------

    def _send_subscribe(self, channel: str) -> None:
        node = self._placed.get(channel)
        conn = self._subs.get(node) if node is not None else None
        if conn is not None and not conn.closed:
            conn.send(b"SSUBSCRIBE", self._key(channel))  # confirmed again
        else:
            self._wake.set()  # the placer subscribes it on its owner

    def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        node = self._placed.pop(channel, None)
        conn = self._subs.get(node) if node is not None else None
        if conn is not None and not conn.closed:
            conn.send(b"SUNSUBSCRIBE", self._key(channel))
