"""Several gateway processes sharing one Redis, or a Redis Cluster: fan-out across nodes,
exactly once, in order (every test runs in both modes)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.clients import WsClient, bearer, register
from tests.support.redis_cluster import RedisCluster
from tests.support.servers import GatewayNode, RedisServer, SharedRedis, node_env, running_nodes

MESSAGES = 200


@pytest.fixture
def nodes(shared_redis: SharedRedis, tmp_path: Path) -> Iterator[list[GatewayNode]]:
    with running_nodes(node_env(shared_redis, tmp_path), tmp_path) as started:
        yield started


def redis_numsub(shared: SharedRedis, prefix: str, channel: str) -> int:
    """How many nodes subscribe to ``channel`` (a shard channel on a cluster)."""
    if isinstance(shared, RedisCluster):
        return shared.shard_numsub(f"{prefix}{{{channel}}}")
    assert isinstance(shared, RedisServer)
    with socket.create_connection(("127.0.0.1", shared.port), timeout=5) as sock:
        sock.sendall(f"PUBSUB NUMSUB {prefix}{channel}\r\n".encode())
        reply = sock.recv(4096).split(b"\r\n")
    # *2 / $len / channel / :count
    return int(reply[3][1:])


async def connect(http: aiohttp.ClientSession, node: GatewayNode, token: str) -> WsClient:
    return await WsClient.connect(http, token, url=node.base_url + "/ws")


async def collect_events(conn: WsClient, count: int) -> list[dict[str, Any]]:
    return [await conn.next_event() for _ in range(count)]


async def test_messages_cross_nodes_exactly_once_in_order(
    nodes: list[GatewayNode], http: aiohttp.ClientSession
) -> None:
    a, b = nodes
    alice = await register(http, "alice", base=a.base_url)
    bob = await register(http, "bob", base=b.base_url)
    on_b = await connect(http, b, bob["access_token"])
    on_a = await connect(http, a, bob["access_token"])
    await on_b.result("subscribe", channel="room:x")
    await on_a.result("subscribe", channel="room:x")
    publisher = await connect(http, a, alice["access_token"])
    offsets = []
    for n in range(MESSAGES):
        reply = await publisher.result("publish", channel="room:x", data={"n": n})
        offsets.append(reply["offset"])
    assert offsets == list(range(1, MESSAGES + 1))
    for conn in (on_b, on_a):
        events = await collect_events(conn, MESSAGES)
        assert [e["data"]["n"] for e in events] == list(range(MESSAGES))
        assert [e["offset"] for e in events] == offsets
        # Nothing more arrives: no duplicates.
        with pytest.raises(TimeoutError):
            await conn.next_push(timeout=0.5)


async def test_dm_and_rest_publish_across_nodes(
    nodes: list[GatewayNode], http: aiohttp.ClientSession
) -> None:
    a, b = nodes
    alice = await register(http, "alice", base=a.base_url)
    bob = await register(http, "bob", base=b.base_url)
    dm = "dm:" + ":".join(sorted([alice["user_id"], bob["user_id"]]))
    bob_ws = await connect(http, b, bob["access_token"])
    await bob_ws.result("subscribe", channel=dm)
    async with http.post(
        f"{a.base_url}/v1/channels/{dm}/messages",
        json={"data": {"text": "via REST on A"}},
        headers=bearer(alice),
    ) as r:
        assert r.status == 201
    event = await bob_ws.next_event()
    assert (event["channel"], event["data"]) == (dm, {"text": "via REST on A"})
    # A long poll on node B wakes for a message published on node A.
    poll = asyncio.create_task(
        http.get(f"{b.base_url}/v1/channels/{dm}/events?since=1&timeout=20", headers=bearer(bob))
    )
    await asyncio.sleep(0.3)
    alice_ws = await connect(http, a, alice["access_token"])
    await alice_ws.result("publish", channel=dm, data={"text": "second"})
    async with await poll as r:
        body = await r.json()
    assert [e["data"] for e in body["events"]] == [{"text": "second"}]


async def test_each_node_subscribes_once_per_channel(
    nodes: list[GatewayNode], http: aiohttp.ClientSession, shared_redis: SharedRedis
) -> None:
    a, b = nodes
    prefix = a.env["MOOSIC_REDIS_PREFIX"]
    account = await register(http, "carol", base=a.base_url)
    token = account["access_token"]
    on_a = [await connect(http, a, token) for _ in range(3)]
    on_b = [await connect(http, b, token) for _ in range(2)]
    for conn in on_a + on_b:
        await conn.result("subscribe", channel="room:count")
    assert redis_numsub(shared_redis, prefix, "room:count") == 2
    for conn in on_a:
        await conn.result("unsubscribe", channel="room:count")
    await on_b[0].result("ping")  # a round trip, so node A's UNSUBSCRIBE has been sent
    async with asyncio.timeout(10):
        while redis_numsub(shared_redis, prefix, "room:count") != 1:
            await asyncio.sleep(0.05)
    for conn in on_b:
        await conn.close()
    async with asyncio.timeout(10):
        while redis_numsub(shared_redis, prefix, "room:count") != 0:
            await asyncio.sleep(0.05)


async def test_group_removal_ends_subscriptions_on_every_node(
    nodes: list[GatewayNode], http: aiohttp.ClientSession
) -> None:
    a, b = nodes
    owner = await register(http, "owner", base=a.base_url)
    member = await register(http, "member", base=a.base_url)
    async with http.post(
        f"{a.base_url}/v1/groups",
        json={"name": "g", "members": [member["user_id"]]},
        headers=bearer(owner),
    ) as r:
        gid = (await r.json())["group_id"]
    member_on_b = await connect(http, b, member["access_token"])
    await member_on_b.result("subscribe", channel=f"group:{gid}")
    async with http.delete(
        f"{a.base_url}/v1/groups/{gid}/members/{member['user_id']}", headers=bearer(owner)
    ) as r:
        assert (await r.json())["removed"] is True
    push = await member_on_b.next_push(op="unsubscribed")
    assert push == {"op": "unsubscribed", "channel": f"group:{gid}", "reason": "removed_from_group"}
