"""Cluster mode (issue 13) on a real Redis Cluster: slots, redirects, a failover, a reshard.

The behaviour tests that hold on one Redis run on a cluster too (``shared_redis`` in
tests/conftest.py runs them in both modes: multinode, presence, receipts, hot counters, rate
limits and revocation). These are what only a cluster has: keys and channels routed by slot,
``ASK`` and ``MOVED`` followed, a primary killed mid-flow, slots moved under traffic. The last
two start their own cluster (they break or reshape it) and two gateway processes on it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from gateway.settings import SettingsError, load_settings
from storage.redis.cluster import ClusterClient, parse_seeds
from storage.redis.slots import key_slot, partition_prefix
from tests.integration.test_faults import wait_for
from tests.integration.test_ws import token_for
from tests.support.redis_cluster import RedisCluster
from tests.support.resilient import Publisher, Subscriber
from tests.support.servers import GatewayNode, node_env

PREFIX = "c:"


def channels_on_every_shard(cluster: RedisCluster, per_shard: int) -> list[str]:
    """Room channels whose slots fall on each primary, ``per_shard`` each."""
    wanted: dict[str, list[str]] = {}
    index = 0
    while min((len(v) for v in wanted.values()), default=0) < per_shard or len(wanted) < 3:
        channel = f"room:r{index}"
        index += 1
        owner = cluster.primary_of(key_slot(f"{PREFIX}{{{channel}}}".encode())).address
        found = wanted.setdefault(owner, [])
        if len(found) < per_shard:
            found.append(channel)
    return [c for group in wanted.values() for c in group]


def test_slots_are_what_redis_says(redis_cluster: RedisCluster) -> None:
    node = next(n for n in redis_cluster.nodes if n.alive)
    keys = ["a", "user:1", "{user}x", "foo{bar}baz", "{}x", "x{}", "{a}{b}", "é", "c:{room:r1}:w"]
    keys += [partition_prefix("moosic:p:", i, 16) + "u:bob" for i in range(16)]
    for key in keys:
        assert key_slot(key.encode()) == int(node.cli("CLUSTER", "KEYSLOT", key)), key


def test_the_url_names_one_seed_or_several() -> None:
    seeds = parse_seeds("rediss://user:pa%40ss@h1:7000,h2:7001")
    assert [(s.host, s.port, s.tls, s.username, s.password) for s in seeds] == [
        ("h1", 7000, True, "user", "pa@ss"),
        ("h2", 7001, True, "user", "pa@ss"),
    ]
    base = {"MOOSIC_DEV": "1", "MOOSIC_JWT_SECRET": "x" * 40}
    with pytest.raises(SettingsError, match="MOOSIC_REDIS_CLUSTER=1"):
        load_settings({**base, "MOOSIC_REDIS_URL": "redis://h1:1,h2:2"})
    with pytest.raises(SettingsError, match="MOOSIC_REDIS_URL: required"):
        load_settings({**base, "MOOSIC_REDIS_CLUSTER": "1"})
    with pytest.raises(SettingsError, match="over TCP"):
        load_settings({**base, "MOOSIC_REDIS_CLUSTER": "1", "MOOSIC_REDIS_URL": "unix:///x"})
    settings = load_settings(
        {**base, "MOOSIC_REDIS_CLUSTER": "1", "MOOSIC_REDIS_URL": "redis://h1:1,h2:2"}
    )
    assert settings.redis.redis_cluster
    assert settings.redis.redis_url == "redis://h1:1,h2:2"


async def test_keys_go_to_their_shards_and_redirects_are_followed(tmp_path: Path) -> None:
    cluster = RedisCluster(tmp_path).start()
    redis = ClusterClient(cluster.url.split(",")[0])  # one seed: the rest is discovered
    try:
        for i in range(300):
            await redis.call(b"SET", f"k{i}".encode(), str(i).encode())
        assert len(redis.primaries) == 3
        for node in (n for n in cluster.nodes if n.alive):
            role = node.cli("ROLE").split()[0]
            if role == "master":
                assert int(node.cli("DBSIZE")) > 50  # every shard holds some of them

        # A slot half-way through a migration: the moved key is answered through ASK.
        slot = key_slot(b"{mig}a")
        source = cluster.primary_of(slot)
        target = next(
            cluster.primary_of(s) for s in (0, 8000, 16000) if cluster.primary_of(s) != source
        )
        await redis.call(b"SET", b"{mig}a", b"1")
        await redis.call(b"SET", b"{mig}b", b"2")
        target.cli("CLUSTER", "SETSLOT", str(slot), "IMPORTING", cluster.node_id(source))
        source.cli("CLUSTER", "SETSLOT", str(slot), "MIGRATING", cluster.node_id(target))
        source.cli("MIGRATE", "127.0.0.1", str(target.port), "{mig}a", "0", "5000")
        assert await redis.call(b"GET", b"{mig}a") == b"1"
        assert redis.redirects == 1
        assert redis.owner(b"{mig}a").port == source.port  # ASK does not change the map

        # The migration ends: the stale map meets MOVED, follows it and is read again.
        source.cli("MIGRATE", "127.0.0.1", str(target.port), "{mig}b", "0", "5000")
        for node in (n for n in cluster.nodes if n.alive):
            node.cli("CLUSTER", "SETSLOT", str(slot), "NODE", cluster.node_id(target))
        assert await redis.call(b"GET", b"{mig}b") == b"2"
        assert redis.redirects == 2
        async with asyncio.timeout(10):
            while redis.owner(b"{mig}b").port != target.port:
                await asyncio.sleep(0.05)
        script = b"return redis.call('GET', KEYS[1])"
        assert await redis.script(script, [b"{mig}b"], []) == b"2"
    finally:
        await redis.close()
        cluster.stop()


async def start_nodes(cluster: RedisCluster, tmp_path: Path) -> list[GatewayNode]:
    env = node_env(
        cluster,
        tmp_path,
        MOOSIC_REDIS_PREFIX=PREFIX,
        MOOSIC_SHUTDOWN_TIMEOUT="10",
        MOOSIC_REDIS_CLUSTER_REFRESH="1",
    )
    return [GatewayNode(env, tmp_path / f"{name}.log").start() for name in "ab"]


async def flow(
    http: aiohttp.ClientSession, nodes: list[GatewayNode], channels: list[str], count: int
) -> tuple[list[Publisher], list[Subscriber], list[asyncio.Task[None]]]:
    """Subscribers of every channel on both nodes, and one publisher per channel."""
    urls = [n.base_url for n in nodes]
    subs = []
    for index, channel in enumerate(channels):
        for side in (0, 1):
            user = f"s{index}-{side}"
            subs.append(Subscriber(http, token_for(user), channel, urls, node=side).start())
    for sub in subs:
        await asyncio.wait_for(sub.subscribed.wait(), 30)
    publishers = [
        Publisher(http, token_for(f"p{index}"), channel, urls, node=index % 2)
        for index, channel in enumerate(channels)
    ]
    tasks = [asyncio.create_task(p.run(count, interval=0.02)) for p in publishers]
    return publishers, subs, tasks


async def settle(publishers: list[Publisher], subs: list[Subscriber]) -> None:
    """Wait for every subscriber to reach its channel's last acknowledged offset; check them."""
    last = {p.channel: max(p.acked.values()) for p in publishers}
    await wait_for(
        lambda: all(s.last >= last[s.channel] for s in subs), 60, "every subscriber to catch up"
    )
    for sub in subs:
        await sub.finish()
    for publisher in publishers:
        acked = sorted(publisher.acked.values())
        assert acked == list(range(1, len(acked) + 1)), f"{publisher.channel}: offsets had gaps"
    for sub in subs:
        assert not sub.problems, (sub.channel, sub.problems)
        # Every acknowledged message exactly once, in order.
        assert sub.offsets == list(range(1, last[sub.channel] + 1)), sub.channel


async def readyz(http: aiohttp.ClientSession, node: GatewayNode) -> int:
    try:
        async with http.get(node.base_url + "/readyz") as response:
            return response.status
    except aiohttp.ClientError:
        return 0


async def test_a_primary_killed_mid_flow_loses_nothing(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    cluster = RedisCluster(tmp_path / "cluster").start()
    nodes = await start_nodes(cluster, tmp_path)
    subs: list[Subscriber] = []
    try:
        channels = channels_on_every_shard(cluster, 2)
        publishers, subs, tasks = await flow(http, nodes, channels, 150)
        await wait_for(lambda: all(len(p.acked) >= 40 for p in publishers), 60, "40 each")
        victim_slot = key_slot(f"{PREFIX}{{{channels[0]}}}".encode())
        victim = cluster.primary_of(victim_slot)
        cluster.kill(victim)
        # Until the replica takes over, the nodes say they are not ready (a shard is gone).
        seen = set()
        async with asyncio.timeout(60):
            while 503 not in seen:
                seen.add(await readyz(http, nodes[0]))
                await asyncio.sleep(0.02)
        cluster.wait_failover(victim_slot, victim)
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        await settle(publishers, subs)
        for node in nodes:
            await wait_for_ready(http, node)
    finally:
        for sub in subs:
            await sub.finish()
        for node in nodes:
            node.stop()
        cluster.stop()


async def wait_for_ready(http: aiohttp.ClientSession, node: GatewayNode) -> None:
    async with asyncio.timeout(60):
        while await readyz(http, node) != 200:
            await asyncio.sleep(0.1)


async def test_slots_moved_under_traffic_lose_nothing_and_repeat_nothing(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    cluster = RedisCluster(tmp_path / "cluster", replicas=0).start()
    nodes = await start_nodes(cluster, tmp_path)
    subs: list[Subscriber] = []
    try:
        # Channels in the lowest slots of one primary: the ones a reshard moves first.
        source = cluster.primary_of(16383)
        low = min(
            r[0] for _i, a, _r, ranges in cluster.topology() if a == source.address for r in ranges
        )
        moving = []
        index = 0
        while len(moving) < 4:
            channel = f"room:m{index}"
            index += 1
            if low <= key_slot(f"{PREFIX}{{{channel}}}".encode()) < low + 300:
                moving.append(channel)
        staying = channels_on_every_shard(cluster, 1)
        publishers, subs, tasks = await flow(http, nodes, moving + staying, 150)
        await wait_for(lambda: all(len(p.acked) >= 30 for p in publishers), 60, "30 each")
        target = cluster.primary_of(0)
        await asyncio.to_thread(cluster.reshard, source, target, 300)
        for channel in moving:
            slot = key_slot(f"{PREFIX}{{{channel}}}".encode())
            assert cluster.primary_of(slot).address == target.address
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        await settle(publishers, subs)
        for publisher in publishers:
            assert publisher.duplicates == 0
    finally:
        for sub in subs:
            await sub.finish()
        for node in nodes:
            node.stop()
        cluster.stop()
