"""Our RESP client vs redis-py's async RedisCluster on a real 3-shard cluster (issue 13).

    PYTHONPATH=. .venv/bin/python -m loadtest.redis_cluster_clients [--messages 20000]

Starts a 3-primary Redis Cluster on free loopback ports (stopped at the end), then measures,
for each client, the client-side CPU (``time.process_time``) of

- **publish**: ``--messages`` SPUBLISH over 200 channels spread over every shard, issued by
  concurrent callers the way publishing handlers do (ours: ``ClusterClient.connection(key)``
  and a pipelined ``submit``, as :class:`gateway.fanout.broker_cluster.ClusterBroker` does;
  redis-py: ``RedisCluster.spublish``);
- **receive**: the same messages delivered to one subscriber of every channel (ours: one
  subscribed RESP connection per shard with ``on_push``; redis-py: ``PubSub.ssubscribe`` and
  ``get_sharded_message`` with a target node per shard, the faster way measured in the issue),

and prints µs of client CPU per message for each and their ratio. Bounded: it stops after the
messages are through or after 120 s.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as PyCluster

from storage.redis.cluster import ClusterClient
from storage.redis.resp import RespConnection
from storage.redis.slots import key_slot
from tests.support.redis_cluster import RedisCluster

CHANNELS = [f"bench{{ch{i}}}".encode() for i in range(200)]
DEADLINE_S = 120.0


async def ours(url: str, messages: int) -> tuple[float, float]:
    client = ClusterClient(url)
    await client.ensure_topology()
    received = 0
    done = asyncio.Event()

    def on_push(reply: list[Any]) -> None:
        nonlocal received
        if reply[0] == b"smessage":
            received += 1
            if received >= messages:
                done.set()

    subs = []
    for node in client.primaries:
        conn = await RespConnection.open(node, timeout=5, on_push=on_push)
        conn.subscribed = True
        subs.append((node, conn))
    for name in CHANNELS:
        owner = client.owner(name)
        next(c for n, c in subs if n == owner).send(b"SSUBSCRIBE", name)
    await asyncio.sleep(0.5)
    payload = b"x" * 200

    async def publisher(start: int) -> None:
        for i in range(start, messages, 50):
            name = CHANNELS[i % len(CHANNELS)]
            conn = await client.connection(name)
            future = conn.submit(b"SPUBLISH", name, payload)
            if future is None:
                await conn.command(b"SPUBLISH", name, payload)
            if i % 500 == start:
                await asyncio.sleep(0)

    cpu = time.process_time()
    await asyncio.gather(*(publisher(s) for s in range(50)))
    async with asyncio.timeout(DEADLINE_S):
        await done.wait()
    total = time.process_time() - cpu
    for _node, conn in subs:
        conn.close()
    await client.close()
    return total, float(received)


async def redis_py(url: str, messages: int) -> tuple[float, float]:
    hosts = url.removeprefix("redis://").split(",")
    nodes = [ClusterNode(h.split(":")[0], int(h.split(":")[1])) for h in hosts]
    client = PyCluster(startup_nodes=nodes)
    await client.initialize()
    pubsub = client.pubsub()
    for name in CHANNELS:
        await pubsub.ssubscribe(name)
    primaries = client.get_primaries()
    received = 0

    async def reader(node: Any) -> None:
        nonlocal received
        while received < messages:
            found = await pubsub.get_sharded_message(
                ignore_subscribe_messages=True, timeout=0.1, target_node=node
            )
            if found is not None:
                received += 1

    await asyncio.sleep(0.5)
    payload = b"x" * 200

    async def publisher(start: int) -> None:
        for i in range(start, messages, 50):
            await client.spublish(CHANNELS[i % len(CHANNELS)], payload)

    cpu = time.process_time()
    readers = [asyncio.create_task(reader(node)) for node in primaries]
    await asyncio.gather(*(publisher(s) for s in range(50)))
    async with asyncio.timeout(DEADLINE_S):
        await asyncio.gather(*readers)
    total = time.process_time() - cpu
    await pubsub.aclose()
    await client.aclose()
    return total, float(received)


async def main(messages: int) -> None:
    with tempfile.TemporaryDirectory() as work:
        cluster = RedisCluster(Path(work), replicas=0).start()
        try:
            shards = {cluster.primary_of(key_slot(c)).address for c in CHANNELS}
            print(f"cluster: 3 primaries, {len(CHANNELS)} channels on {len(shards)} shards")
            results = {}
            for name, run in (("ours", ours), ("redis-py", redis_py), ("ours again", ours)):
                cpu, received = await run(cluster.url, messages)
                results[name] = cpu / messages * 1e6
                print(
                    f"{name:>10}: {received:.0f} delivered, client CPU "
                    f"{results[name]:.1f} µs per message (publish + receive)"
                )
            best_ours = min(results["ours"], results["ours again"])
            print(f"redis-py / ours: {results['redis-py'] / best_ours:.2f}x the CPU per message")
        finally:
            cluster.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().messages))
