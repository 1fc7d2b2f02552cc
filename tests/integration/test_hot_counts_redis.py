"""Hot counters shared through a real redis-server, and a real Redis Cluster: seeding, one push
per window across nodes, flushes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import orjson
import pytest

from gateway.fanout.broker_cluster import ClusterBroker
from gateway.fanout.broker_redis import RedisBroker
from gateway.fanout.counts import Change, RedisHotCounts
from gateway.metrics import Metrics
from handlers.messages import counts_message
from storage.redis.client import RedisClient
from storage.redis.cluster import ClusterClient
from storage.redis.presence import RedisPresence
from storage.videos import VideoCounts
from tests.support.servers import RedisServer, SharedRedis
from tests.unit.test_counts import FakeStore

WINDOW = 0.2


class Node:
    """One gateway node's view: a broker (listening to ``video:v``) and its hot counters."""

    def __init__(self, broker: RedisBroker, counts: RedisHotCounts) -> None:
        self.broker = broker
        self.counts = counts
        self.received: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.arrived = asyncio.Event()

    def deliver(
        self, channel: str, offset: int, epoch: str, payload: bytes, stored_at: int = 0
    ) -> None:
        assert (channel, offset, epoch) == ("video:v", 0, "")
        self.raw.append(payload)
        self.received.append(orjson.loads(payload))
        self.arrived.set()


@pytest.fixture
async def nodes(shared_redis: SharedRedis) -> AsyncIterator[tuple[list[Node], FakeStore]]:
    prefix = f"h{uuid.uuid4().hex[:8]}:"
    store = FakeStore()
    started: list[Node] = []
    clients: list[RedisClient] = []
    for _ in range(2):
        redis: RedisClient
        broker: RedisBroker
        if shared_redis.cluster:
            redis = ClusterClient(shared_redis.url)
            broker = ClusterBroker(redis, prefix=prefix, metrics=Metrics())
        else:
            redis = RedisClient(shared_redis.url)
            broker = RedisBroker(redis, prefix=prefix, metrics=Metrics())
        clients.append(redis)
        presence = RedisPresence(redis, prefix=prefix, ttl=10)
        counts = RedisHotCounts(
            store,  # type: ignore[arg-type]
            redis,
            prefix=prefix,
            viewers_prefix=partial(presence.channel_prefix, channel_prefix="video:"),
            window=WINDOW,
            flush_interval=0.2,
            publish=broker.publish,
        )
        node = Node(broker, counts)
        await broker.start(node.deliver, lambda: None)
        await broker.subscribe("video:v")
        started.append(node)
    try:
        yield started, store
    finally:
        for node in started:
            await node.broker.close()
        for redis in clients:
            await redis.close()


async def wait_for_push(node: Node) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while not node.received:
            node.arrived.clear()
            await node.arrived.wait()
    return node.received[-1]


async def test_counters_are_seeded_from_the_store_and_shared(
    nodes: tuple[list[Node], FakeStore],
) -> None:
    (a, b), store = nodes
    store.add_video("v", VideoCounts(likes=40, comments=2, shares=1, version=43))

    await asyncio.gather(*(node.counts.add("v", likes=1) for node in (a, b) for _ in range(30)))
    await b.counts.add("v", comments=1)
    await a.counts.add("ghost", likes=1)

    assert await a.counts.totals("v") == VideoCounts(100, 3, 1, 104)
    assert await b.counts.totals("v") == VideoCounts(100, 3, 1, 104)
    assert await a.counts.totals("ghost") is None
    assert store.reads < 10  # a few (reads in flight are shared), not one per like


async def test_one_node_pushes_per_window_with_the_absolute_totals(
    nodes: tuple[list[Node], FakeStore],
) -> None:
    (a, b), store = nodes
    store.add_video("v")
    await a.counts.add("v", likes=1)
    await b.counts.add("v", likes=1)

    sent = [await a.counts.tick(), await b.counts.tick(), await a.counts.tick()]
    push = await wait_for_push(b)

    assert sent == [1, 0, 0]  # the first took the window's lock, the others found it taken
    assert push == {
        "op": "counts",
        "channel": "video:v",
        "video_id": "v",
        "likes": 2,
        "comments": 0,
        "shares": 0,
        "views": 0,
        "watch_seconds": 0,
        "viewers": 0,
        "version": 2,
    }
    await wait_for_push(a)  # every node delivers it, the pushing one too
    await b.counts.add("v", likes=1)
    await asyncio.sleep(WINDOW + 0.05)  # the lock expires on Redis's clock
    assert await b.counts.tick() == 1
    async with asyncio.timeout(10):
        while a.received[-1]["likes"] != 3:
            await asyncio.sleep(0.01)
    assert await a.counts.tick() == 0  # nothing changed since: nothing to push


async def test_the_script_builds_the_bytes_of_counts_message(
    nodes: tuple[list[Node], FakeStore],
) -> None:
    """The Lua copy of the ``counts`` shape stays byte-equal to handlers.messages'."""
    (a, b), store = nodes
    store.add_video("v", VideoCounts(likes=-3, comments=2, shares=1, version=7))
    await a.counts.add("v", comments=1)
    assert await a.counts.tick() == 1
    await wait_for_push(b)
    assert b.raw[-1] == counts_message("v", VideoCounts(0, 3, 1, 8), 0)


async def test_one_node_flushes_and_a_change_during_a_flush_is_written_next_time(
    nodes: tuple[list[Node], FakeStore],
) -> None:
    (a, b), store = nodes
    for name in ("v", "w"):
        store.add_video(name)
    await a.counts.add("v", likes=5)
    await b.counts.add("w", shares=1)

    written = [await a.counts.flush(), await b.counts.flush()]

    assert written == [2, 0]  # b found the interval's lock taken
    assert store.videos["v"].counts == VideoCounts(5, 0, 0, 1)
    assert store.videos["w"].counts == VideoCounts(0, 0, 1, 1)
    await asyncio.sleep(0.25)  # the flush lock expires
    assert await b.counts.flush() == 0  # nothing left marked

    # A change that lands between the read and the unmark keeps the video marked.
    original = store.save_video_counts

    async def save_and_like(counts: dict[str, VideoCounts]) -> None:
        await original(counts)
        await a.counts.add("v", likes=1)

    await a.counts.add("v", likes=1)
    store.save_video_counts = save_and_like  # type: ignore[method-assign]
    await asyncio.sleep(0.25)
    assert await b.counts.flush() == 1
    store.save_video_counts = original  # type: ignore[method-assign]
    assert store.videos["v"].counts == VideoCounts(6, 0, 0, 2)
    await asyncio.sleep(0.25)
    assert await a.counts.flush() == 1
    assert store.videos["v"].counts == VideoCounts(7, 0, 0, 3)


async def test_a_failed_store_write_leaves_the_video_marked(
    nodes: tuple[list[Node], FakeStore],
) -> None:
    (a, b), store = nodes
    store.add_video("v")
    await a.counts.add("v", likes=2)
    store.fail = True
    with pytest.raises(Exception, match="down"):
        await a.counts.flush()
    store.fail = False
    await asyncio.sleep(0.25)
    assert await b.counts.flush() == 1
    assert store.videos["v"].counts == VideoCounts(2, 0, 0, 1)


async def test_an_unreachable_redis_costs_no_change(redis_server: RedisServer) -> None:
    store = FakeStore()
    store.add_video("v")
    redis = RedisClient("redis://127.0.0.1:1/0", timeout=0.2)
    counts = RedisHotCounts(
        store,  # type: ignore[arg-type]
        redis,
        prefix="x:",
        viewers_prefix=lambda _part: b"x:p:c:video:",
        window=WINDOW,
        flush_interval=0.5,
    )
    await counts.add("v", likes=1)  # never raises: kept to be counted later
    assert await counts.totals("v") is None
    assert counts._owed.deltas == {"v": Change(likes=1)}
    await redis.close()
