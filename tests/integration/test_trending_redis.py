"""Trending shared through a real redis-server, and a real Redis Cluster: two nodes add, either
reads the same order; the window slides; countries apart; a bucket stays bounded."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from storage.redis.client import RedisClient
from storage.redis.cluster import ClusterClient
from storage.redis.trending import RedisTrending
from storage.trending import BUCKETS, KEEP
from tests.support.servers import SharedRedis
from tests.unit.test_counts import Clock

WINDOW = 1200.0


@pytest.fixture
async def boards(shared_redis: SharedRedis) -> AsyncIterator[tuple[list[RedisTrending], Clock]]:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    clock = Clock()
    clients: list[RedisClient] = []
    made = []
    for _ in range(3):
        redis = (
            ClusterClient(shared_redis.url)
            if shared_redis.cluster
            else RedisClient(shared_redis.url)
        )
        clients.append(redis)
        made.append(RedisTrending(redis, prefix=prefix, window=WINDOW, clock=clock))
    yield made, clock
    for redis in clients:
        await redis.close()


async def test_two_nodes_add_and_any_node_reads_the_same_order(
    boards: tuple[list[RedisTrending], Clock],
) -> None:
    (a, b, reader), _clock = boards
    await a.add({("*", "x"): 3.0, ("*", "y"): 1.5, ("KH", "x"): 3.0})
    await b.add({("*", "y"): 4.0, ("*", "z"): 0.5, ("AU", "y"): 4.0})
    await b.add({("*", "gone"): 2.0})
    await b.add({("*", "gone"): -2.0})  # a like taken back: nothing left

    assert await reader.top("*", 10) == [("y", 5.5), ("x", 3.0), ("z", 0.5)]
    assert await reader.top("KH", 10) == [("x", 3.0)]
    assert await reader.top("AU", 10) == [("y", 4.0)]
    assert await reader.top("US", 10) == []
    assert await a.top("*", 1) == [("y", 5.5)]


async def test_the_window_slides_over_buckets_in_redis(
    boards: tuple[list[RedisTrending], Clock],
) -> None:
    (a, b, _reader), clock = boards
    await a.add({("*", "early"): 10.0})
    clock.now += (BUCKETS - 1) * WINDOW / BUCKETS
    await b.add({("*", "late"): 1.0})
    assert await b.top("*", 10) == [("early", 10.0), ("late", 1.0)]
    clock.now += WINDOW / BUCKETS  # the bucket of "early" left the window
    assert await a.top("*", 10) == [("late", 1.0)]


async def test_a_bucket_in_redis_keeps_its_best(
    boards: tuple[list[RedisTrending], Clock],
) -> None:
    (a, _b, reader), _clock = boards
    await a.add({("*", f"v{i:05}"): float(i + 1) for i in range(2 * KEEP + 1)})
    top = await reader.top("*", 3)
    assert top == [(f"v{i:05}", float(i + 1)) for i in (2 * KEEP, 2 * KEEP - 1, 2 * KEEP - 2)]
    redis = reader._redis
    key = f"{reader._prefix}tr:{{*}}:{int(_clock() // (WINDOW / BUCKETS))}".encode()
    assert await redis.call(b"ZCARD", key) == KEEP
    assert 0 < await redis.call(b"PTTL", key) <= (WINDOW + WINDOW / BUCKETS) * 1000
