"""The Redis broker against a real redis-server: pipelining, confirmations, and reconnects."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.fanout.broker_redis import RedisBroker
from gateway.fanout.hub import Backfill, Hub
from gateway.metrics import Metrics
from storage.redis.client import RedisClient
from storage.redis.resp import RedisAddress, RespConnection
from tests.support.servers import RedisServer


class Inbox:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.arrived = asyncio.Event()

    def deliver(self, frame: bytes) -> None:
        self.frames.append(frame)
        self.arrived.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(20):
            while len(self.frames) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def publish_directly(port: int, channel: str, payload: str) -> None:
    """PUBLISH from a separate plain connection, as another node would (with the envelope)."""
    parts = [b"PUBLISH", channel.encode(), payload.encode()]
    command = b"*3\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(command)
        assert sock.recv(64).startswith(b":")


async def test_commands_pipeline_and_replies_match(redis_server: RedisServer) -> None:
    conn = await RespConnection.open(RedisAddress.parse(redis_server.url), timeout=5)
    replies = await asyncio.gather(*(conn.command(b"ECHO", str(n)) for n in range(500)))
    assert replies == [str(n).encode() for n in range(500)]
    conn.close()


def test_addresses_parse() -> None:
    address = RedisAddress.parse("rediss://user:p%40ss@cache.local:6380/3")
    assert (address.host, address.port, address.db, address.tls) == ("cache.local", 6380, 3, True)
    assert (address.username, address.password) == ("user", "p@ss")
    assert RedisAddress.parse("unix:///run/redis.sock").unix_path == "/run/redis.sock"
    with pytest.raises(ValueError, match="redis://"):
        RedisAddress.parse("http://localhost")


async def test_hub_resubscribes_after_redis_restarts(own_redis: RedisServer) -> None:
    metrics = Metrics()
    redis = RedisClient(own_redis.url, timeout=2.0)
    hub = Hub(
        RedisBroker(redis, prefix="p:", metrics=metrics),
        metrics,
        max_watchers=10,
        heartbeat=30.0,
    )
    await hub.start()
    try:
        inbox = Inbox()
        await hub.subscribe("room:r", inbox)
        await hub.publish("room:r", b'{"n":1}')
        await inbox.wait_for(1)
        assert inbox.frames[0].endswith(b'{"n":1}')

        own_redis.stop()
        # While Redis is down a publish still reaches this node's own subscribers.
        await hub.publish("room:r", b'{"n":2}')
        await inbox.wait_for(2)
        async with asyncio.timeout(10):  # the failure is noticed when Redis does not answer
            while metrics.broker_publish_failures < 1:
                await asyncio.sleep(0.01)
        assert not await hub.broker_ready()

        own_redis.start()  # same port
        async with asyncio.timeout(30):
            while not await hub.broker_ready():
                await asyncio.sleep(0.1)
        assert metrics.broker_reconnects == 1
        # The node resubscribed by itself: another node's publish (here: a raw client) arrives.
        async with asyncio.timeout(20):
            while len(inbox.frames) < 3:
                publish_directly(own_redis.port, "p:room:r", '0  elsewhere\n{"n":3}')
                await asyncio.sleep(0.2)
        assert inbox.frames[2].endswith(b'{"n":3}')
    finally:
        await hub.close()
        await redis.close()


async def test_events_redis_missed_are_published_again_and_reach_the_other_node(
    own_redis: RedisServer,
) -> None:
    """The last events of a channel are stored and acknowledged while Redis is down: no later
    event will reveal the gap on another node, so the publishing node sends them again."""
    nodes = []
    for _ in range(2):
        metrics = Metrics()
        redis = RedisClient(own_redis.url, timeout=1.0)
        broker = RedisBroker(redis, prefix="p:", metrics=metrics)
        hub = Hub(
            broker, metrics, max_watchers=10, heartbeat=30.0, backfill=window_backfill(broker)
        )
        await hub.start()
        nodes.append((hub, redis, metrics))
    (a, _, a_metrics), (b, _, b_metrics) = nodes
    try:
        inbox = Inbox()
        await b.subscribe("room:r", inbox)
        await a.publish("room:r", b'{"n":1}', 1, "e")
        await inbox.wait_for(1)

        own_redis.stop()
        for n in (2, 3):  # stored, acknowledged: A's own subscribers would have them now
            await a.publish("room:r", b'{"n":%d}' % n, n, "e")
        async with asyncio.timeout(10):
            while a_metrics.broker_publish_failures < 2:
                await asyncio.sleep(0.01)
        own_redis.start()  # same port, empty: the window is gone too

        await inbox.wait_for(3)
        assert [f[-7:] for f in inbox.frames] == [b'{"n":1}', b'{"n":2}', b'{"n":3}']
        async with asyncio.timeout(20):
            while a_metrics.broker_republished < 2:
                await asyncio.sleep(0.05)
        window = await a.recent("room:r", 0, 10)
        assert window is not None
        assert [offset for offset, _ in window.events] == [2, 3]  # the window has them again
        await asyncio.sleep(0.3)  # nothing arrives twice
        assert len(inbox.frames) == 3
        assert b_metrics.gap_events_skipped == 0
    finally:
        for hub, redis, _metrics in nodes:
            await hub.close()
            await redis.close()


def window_backfill(broker: RedisBroker) -> Backfill:
    """A gap fill from the recent window only (a node with no store)."""

    async def backfill(
        channel: str, since: int, limit: int, *, outage: bool = False
    ) -> tuple[str, list[tuple[int, bytes]]]:
        found = await broker.recent(channel, since, limit)
        return ("", []) if found is None else (found.epoch, found.events)

    return backfill


async def test_subscribe_waits_for_redis_when_it_is_down(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "late")
    metrics = Metrics()
    redis = RedisClient(server.url, timeout=1.0)
    broker = RedisBroker(redis, prefix="q:", metrics=metrics)
    hub = Hub(broker, metrics, max_watchers=10, heartbeat=30.0)
    start = asyncio.create_task(hub.start())
    # Nothing listens yet: the control subscription cannot be confirmed.
    from storage.errors import Unavailable

    with pytest.raises(Unavailable):
        await start
    await broker.close()
    await redis.close()
