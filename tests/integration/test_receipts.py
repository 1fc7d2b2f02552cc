"""Read receipts and the conversation list over real sockets: pushes, unread counts, pages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from tests.support.clients import WsClient, bearer, register
from tests.support.servers import GatewayNode, SharedRedis, node_env, running_nodes

QUIET = 0.3
"""Seconds to wait for a push that must not come."""


def dm(a: dict[str, Any], b: dict[str, Any]) -> str:
    return "dm:" + ":".join(sorted([a["user_id"], b["user_id"]]))


async def events(conn: WsClient, count: int) -> list[dict[str, Any]]:
    got = [await conn.next_event() for _ in range(count)]
    assert [e["op"] for e in got] == ["event"] * count, got
    return got


async def no_push(conn: WsClient) -> None:
    with pytest.raises(TimeoutError):
        await conn.next_push(timeout=QUIET, op="read")


async def listing(conn: WsClient, **params: Any) -> dict[str, dict[str, Any]]:
    page = await conn.result("conversations", **params)
    return {c["channel"]: c for c in page["conversations"]}


async def test_a_read_receipt_reaches_the_dm_peer_and_the_readers_own_connections(
    client: Any,
) -> None:
    alice, bob = await register(client, "alice"), await register(client, "bob")
    channel = dm(alice, bob)
    a = await WsClient.connect(client, alice["access_token"])
    b = await WsClient.connect(client, bob["access_token"])
    b_phone = await WsClient.connect(client, bob["access_token"])
    for conn in (a, b, b_phone):
        await conn.result("subscribe", channel=channel)
    for n in range(3):
        await a.result("publish", channel=channel, data={"n": n})
    for conn in (a, b, b_phone):
        await events(conn, 3)

    assert await b.result("read", channel=channel, offset=2) == {
        "channel": channel,
        "last_read": 2,
        "unread": 1,
    }
    receipt = {"op": "read", "channel": channel, "user": bob["user_id"], "offset": 2}
    assert await a.next_push(op="read") == receipt
    assert await b.next_push(op="read") == receipt
    assert await b_phone.next_push(op="read") == receipt

    # Monotonic: a lower or equal offset changes nothing and pushes nothing.
    for offset in (1, 2, 0):
        again = await b_phone.result("read", channel=channel, offset=offset)
        assert (again["last_read"], again["unread"]) == (2, 1)
    await no_push(a)

    # Above the last offset: clamped to it.
    clamped = await b.result("read", channel=channel, offset=1000)
    assert (clamped["last_read"], clamped["unread"]) == (3, 0)
    assert await a.next_push(op="read") == {**receipt, "offset": 3}
    for conn in (a, b, b_phone):
        await conn.close()


async def test_a_read_receipt_reaches_every_group_member(client: Any) -> None:
    alice, bob, carol = [await register(client, n) for n in ("alice", "bob", "carol")]
    conns = {
        name: await WsClient.connect(client, account["access_token"])
        for name, account in (("alice", alice), ("bob", bob), ("carol", carol))
    }
    group = await conns["alice"].result(
        "create_group", name="Trio", members=[bob["user_id"], carol["user_id"]]
    )
    channel = group["channel"]
    for conn in conns.values():
        await conn.result("subscribe", channel=channel)
    await conns["alice"].result("publish", channel=channel, data={"text": "hi"})
    await conns["bob"].result("publish", channel=channel, data={"text": "hey"})
    for conn in conns.values():
        await events(conn, 2)

    result = await conns["carol"].result("read", channel=channel, offset=2)

    assert (result["last_read"], result["unread"]) == (2, 0)
    receipt = {"op": "read", "channel": channel, "user": carol["user_id"], "offset": 2}
    for conn in conns.values():
        assert await conn.next_push(op="read") == receipt
    for conn in conns.values():
        await conn.close()


async def test_unread_counts_in_the_conversation_list(client: Any) -> None:
    alice, bob, carol = [await register(client, n) for n in ("alice", "bob", "carol")]
    a = await WsClient.connect(client, alice["access_token"])
    b = await WsClient.connect(client, bob["access_token"])
    c = await WsClient.connect(client, carol["access_token"])
    channel = dm(alice, bob)
    assert await b.result("conversations") == {"conversations": [], "next_before": None}

    for n in range(3):
        await a.result("publish", channel=channel, data={"n": n})
    group = await c.result("create_group", name="Book club", members=[bob["user_id"]])
    for n in range(2):
        await c.result("publish", channel=group["channel"], data={"n": n})

    page = await b.result("conversations")
    assert page["next_before"] is None
    first, second = page["conversations"]
    # Newest entry first: the group was made after the DM's first message.
    assert first == {
        "channel": group["channel"],
        "group_id": group["group_id"],
        "name": "Book club",
        "last_offset": 2,
        "epoch": first["epoch"],
        "last_ts": first["last_ts"],
        "last_read": 0,
        "unread": 2,
    }
    assert second == {
        "channel": channel,
        "peer": alice["user_id"],
        "last_offset": 3,
        "epoch": second["epoch"],
        "last_ts": second["last_ts"],
        "last_read": 0,
        "unread": 3,
    }
    assert first["epoch"]
    assert first["last_ts"] > 0
    # A sender's own messages are read.
    mine = await listing(a)
    assert (mine[channel]["unread"], mine[channel]["last_read"], mine[channel]["peer"]) == (
        0,
        3,
        bob["user_id"],
    )
    assert list(await listing(c)) == [group["channel"]]

    await b.result("read", channel=channel, offset=3)
    await b.result("read", channel=group["channel"], offset=1)
    after = await listing(b)
    assert (after[channel]["unread"], after[channel]["last_read"]) == (0, 3)
    assert (after[group["channel"]]["unread"], after[group["channel"]]["last_read"]) == (1, 1)

    await a.result("publish", channel=channel, data={"n": 3})
    assert (await listing(b))[channel]["unread"] == 1
    async with client.get("/v1/conversations", headers=bearer(bob)) as response:
        assert response.status == 200
        assert await response.json() == await b.result("conversations")
    for conn in (a, b, c):
        await conn.close()


async def test_conversation_pages_cover_the_list_once(client: Any) -> None:
    bob = await register(client, "bob")
    b = await WsClient.connect(client, bob["access_token"])
    made = []
    for n in range(5):
        friend = await register(client, f"friend{n}")
        async with client.post(
            f"/v1/channels/{dm(friend, bob)}/messages", headers=bearer(friend), json={"data": {}}
        ) as response:
            assert response.status == 201
        made.append(dm(friend, bob))
    group = await b.result("create_group", name="Solo")
    made.append(group["channel"])
    expected = list(reversed(made))

    seen: list[str] = []
    before = None
    while True:
        params = {"limit": 2} if before is None else {"limit": 2, "before": before}
        page = await b.result("conversations", **params)
        seen.extend(c["channel"] for c in page["conversations"])
        before = page["next_before"]
        if before is None:
            break
    assert seen == expected

    rest_seen: list[str] = []
    query = "limit=4"
    while True:
        async with client.get(f"/v1/conversations?{query}", headers=bearer(bob)) as response:
            assert response.status == 200
            page = await response.json()
        rest_seen.extend(c["channel"] for c in page["conversations"])
        if page["next_before"] is None:
            break
        query = "limit=4&" + urlencode({"before": page["next_before"]})
    assert rest_seen == expected
    await b.close()


async def test_removed_members_lose_the_group_and_new_members_start_read(client: Any) -> None:
    alice, bob, carol = [await register(client, n) for n in ("alice", "bob", "carol")]
    a = await WsClient.connect(client, alice["access_token"])
    b = await WsClient.connect(client, bob["access_token"])
    c = await WsClient.connect(client, carol["access_token"])
    group = await a.result("create_group", name="Team", members=[bob["user_id"]])
    channel = group["channel"]
    for n in range(3):
        await a.result("publish", channel=channel, data={"n": n})
    assert (await listing(b))[channel]["unread"] == 3

    await a.result("add_member", group_id=group["group_id"], user_id=carol["user_id"])
    joined = (await listing(c))[channel]
    assert (joined["last_offset"], joined["last_read"], joined["unread"]) == (3, 3, 0)

    await a.result("remove_member", group_id=group["group_id"], user_id=bob["user_id"])
    assert await listing(b) == {}
    refused = await b.call("read", channel=channel, offset=3)
    assert (refused["op"], refused["code"]) == ("error", "forbidden")

    await c.result("remove_member", group_id=group["group_id"], user_id=carol["user_id"])  # leave
    assert await listing(c) == {}
    assert list(await listing(a)) == [channel]
    for conn in (a, b, c):
        await conn.close()


@pytest.mark.parametrize(
    ("channel", "offset", "code"),
    [
        ("room:lobby", 1, "forbidden"),
        ("video:v1", 1, "forbidden"),
        ("user:{me}", 1, "forbidden"),
        ("dm:aaa:bbb", 1, "forbidden"),
        ("group:nosuchgroup", 1, "forbidden"),
        ("dm:zzz:aaa", 1, "invalid_channel"),
        ("lobby", 1, "invalid_channel"),
        ("dm:{me}:zzzz", -1, "invalid_params"),
        ("dm:{me}:zzzz", "3", "invalid_params"),
        ("dm:{me}:zzzz", None, "invalid_params"),
    ],
)
async def test_read_is_refused_where_it_does_not_apply(
    client: Any, channel: str, offset: Any, code: str
) -> None:
    me = await register(client, "alice")
    conn = await WsClient.connect(client, me["access_token"])
    fields: dict[str, Any] = {"channel": channel.format(me=me["user_id"])}
    if offset is not None:
        fields["offset"] = offset
    error = await conn.call("read", **fields)
    assert (error["op"], error["code"]) == ("error", code), error
    assert error["message"]
    await conn.close()


async def test_read_of_an_empty_dm_is_zero_and_pushes_nothing(client: Any) -> None:
    alice, bob = await register(client, "alice"), await register(client, "bob")
    a = await WsClient.connect(client, alice["access_token"])
    b = await WsClient.connect(client, bob["access_token"])
    await a.result("subscribe", channel=dm(alice, bob))

    result = await b.result("read", channel=dm(alice, bob), offset=5)

    assert result == {"channel": dm(alice, bob), "last_read": 0, "unread": 0}
    await no_push(a)
    # A DM enters the lists with its first message only.
    assert await listing(a) == {}
    for conn in (a, b):
        await conn.close()


async def test_read_and_conversations_over_rest(client: Any) -> None:
    alice, bob = await register(client, "alice"), await register(client, "bob")
    channel = dm(alice, bob)
    a = await WsClient.connect(client, alice["access_token"])
    await a.result("subscribe", channel=channel)
    await a.result("publish", channel=channel, data={"text": "hi"})
    await events(a, 1)

    async with client.post(
        f"/v1/channels/{channel}/read", headers=bearer(bob), json={"offset": 1}
    ) as response:
        assert response.status == 200
        assert await response.json() == {"channel": channel, "last_read": 1, "unread": 0}
    assert await a.next_push(op="read") == {
        "op": "read",
        "channel": channel,
        "user": bob["user_id"],
        "offset": 1,
    }

    for body, status, code in [
        ({}, 400, "invalid_params"),
        ({"offset": -2}, 400, "invalid_params"),
        ([1], 400, "invalid_params"),
    ]:
        async with client.post(
            f"/v1/channels/{channel}/read", headers=bearer(bob), json=body
        ) as response:
            assert (response.status, (await response.json())["code"]) == (status, code)
    async with client.post(
        "/v1/channels/room:lobby/read", headers=bearer(bob), json={"offset": 1}
    ) as r:
        assert (r.status, (await r.json())["code"]) == (403, "forbidden")
    async with client.post(f"/v1/channels/{channel}/read", json={"offset": 1}) as response:
        assert (response.status, (await response.json())["code"]) == (401, "unauthorized")
    for query in ("limit=0", "limit=101", "limit=x", "before="):
        async with client.get(f"/v1/conversations?{query}", headers=bearer(bob)) as response:
            assert (response.status, (await response.json())["code"]) == (400, "invalid_params")
    async with client.get("/v1/conversations") as response:
        assert response.status == 401
    await a.close()


# -- across nodes ------------------------------------------------------------------------------


@pytest.fixture
def nodes(shared_redis: SharedRedis, tmp_path: Path) -> Iterator[list[GatewayNode]]:
    with running_nodes(node_env(shared_redis, tmp_path), tmp_path) as started:
        yield started


async def test_a_read_receipt_crosses_nodes(
    nodes: list[GatewayNode], http: aiohttp.ClientSession
) -> None:
    node_a, node_b = nodes
    alice = await register(http, "alice", base=node_a.base_url)
    bob = await register(http, "bob", base=node_b.base_url)
    channel = dm(alice, bob)
    a = await WsClient.connect(http, alice["access_token"], url=node_a.base_url + "/ws")
    b = await WsClient.connect(http, bob["access_token"], url=node_b.base_url + "/ws")
    await a.result("subscribe", channel=channel)
    for n in range(2):
        await a.result("publish", channel=channel, data={"n": n})
    await events(a, 2)

    assert (await b.result("read", channel=channel, offset=2))["unread"] == 0

    assert await a.next_push(op="read") == {
        "op": "read",
        "channel": channel,
        "user": bob["user_id"],
        "offset": 2,
    }
    listed = (await listing(a))[channel]
    assert (listed["last_offset"], listed["last_read"]) == (2, 2)
    for conn in (a, b):
        await conn.close()
