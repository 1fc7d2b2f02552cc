"""Push notifications across two gateway processes sharing one SQLite file and Redis.

Who is online is presence across nodes; the outbox is in the store, so any node sends what
any node decided, and a node killed with notifications claimed leaves them to the other, sent
once. Notifications are read back from the file sink's JSON lines (``MOOSIC_PUSH_DIR``, shared
by the nodes here) and the outbox straight from the shared SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.test_dynamodb_nodes import create_tables
from tests.integration.test_push import sent
from tests.support.clients import TIMEOUT, WsClient, bearer, register
from tests.support.dynamodb_local import ACCESS_KEY as DYNAMODB_KEY
from tests.support.dynamodb_local import REGION as DYNAMODB_REGION
from tests.support.dynamodb_local import DynamoDBLocal
from tests.support.moto_server import ACCESS_KEY, SECRET_KEY
from tests.support.servers import GatewayNode, RedisServer, SharedRedis, node_env, running_nodes

LEASE = 20.0
"""The shortest lease the settings allow: how long the killed node's claims hold."""


def outbox(tmp_path: Path) -> list[tuple[str, str, int, str | None]]:
    """(user, conversation, count, lease) of every pending notification in the shared file."""
    with contextlib.closing(sqlite3.connect(tmp_path / "shared.db", timeout=10)) as db:
        rows = db.execute(
            "SELECT user_id, conversation, count, lease FROM push_outbox ORDER BY user_id"
        ).fetchall()
    return [(str(r[0]), str(r[1]), int(r[2]), r[3]) for r in rows]


async def until(check: Any, timeout: float = TIMEOUT) -> Any:
    async with asyncio.timeout(timeout):
        while not (found := await asyncio.to_thread(check)):
            await asyncio.sleep(0.05)
    return found


def dm(a: dict[str, Any], b: dict[str, Any]) -> str:
    return "dm:" + ":".join(sorted([a["user_id"], b["user_id"]]))


async def say(
    http: aiohttp.ClientSession, node: GatewayNode, account: dict[str, Any], channel: str, text: str
) -> None:
    async with http.post(
        f"{node.base_url}/v1/channels/{channel}/messages",
        json={"data": {"text": text}},
        headers=bearer(account),
    ) as r:
        assert r.status == 201, await r.json()


async def device(http: aiohttp.ClientSession, node: GatewayNode, account: dict[str, Any]) -> str:
    async with http.post(
        f"{node.base_url}/v1/devices",
        json={
            "platform": "apns",
            "token": account["user_id"].lower() * 2,
            "app_version": "1",
            "locale": "en",
        },
        headers=bearer(account),
    ) as r:
        assert r.status == 201
        return str((await r.json())["device_id"])


async def test_online_on_the_other_node_is_not_notified_offline_gets_one_collapsed(
    shared_redis: SharedRedis, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    env = node_env(shared_redis, tmp_path, MOOSIC_PUSH_DELAY="3", MOOSIC_PUSH_POLL="0.1")
    with running_nodes(env, tmp_path) as (a, b):
        ann = await register(http, "ann", base=a.base_url)
        bob = await register(http, "bob", base=b.base_url)
        cid = await register(http, "cid", base=a.base_url)
        await device(http, b, bob)
        cid_device = await device(http, b, cid)
        async with http.post(
            f"{a.base_url}/v1/groups",
            json={"name": "trio", "members": [bob["user_id"], cid["user_id"]]},
            headers=bearer(ann),
        ) as r:
            channel = "group:" + (await r.json())["group_id"]
        bob_on_b = await WsClient.connect(http, bob["access_token"], url=b.base_url + "/ws")
        await bob_on_b.result("ping")
        ann_on_a = await WsClient.connect(http, ann["access_token"], url=a.base_url + "/ws")
        async with asyncio.timeout(TIMEOUT):  # node a sees bob online (presence in Redis)
            while not (await ann_on_a.result("watch_presence", users=[bob["user_id"]]))["users"][
                bob["user_id"]
            ]["online"]:
                await asyncio.sleep(0.05)

        for text in ("lunch?", "at noon", "the usual place"):
            await say(http, a, ann, channel, text)

        (line,) = await until(lambda: sent(tmp_path / "push"))
        assert (line["user_id"], line["device_id"]) == (cid["user_id"], cid_device)
        assert (line["conversation"], line["count"], line["body"]) == (
            channel,
            3,
            "the usual place",
        )
        await until(lambda: outbox(tmp_path) == [])
        assert [x["user_id"] for x in sent(tmp_path / "push")] == [cid["user_id"]]
        await bob_on_b.ws.close()
        await ann_on_a.ws.close()


async def test_the_cap_per_user_holds_across_nodes(
    shared_redis: SharedRedis, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    env = node_env(
        shared_redis,
        tmp_path,
        MOOSIC_PUSH_DELAY="0",
        MOOSIC_PUSH_POLL="0.1",
        MOOSIC_PUSH_PER_MINUTE="1",
    )
    with running_nodes(env, tmp_path) as (a, b):
        bob = await register(http, "bob", base=a.base_url)
        ann = await register(http, "ann", base=a.base_url)
        cid = await register(http, "cid", base=b.base_url)
        await device(http, a, bob)
        while time.time() % 60 > 40:  # both sends must fall in one minute of the cap
            await asyncio.sleep(0.5)

        await say(http, a, ann, dm(ann, bob), "from ann, on node a")
        await say(http, b, cid, dm(bob, cid), "from cid, on node b")

        (line,) = await until(lambda: sent(tmp_path / "push"))
        (held,) = await until(lambda: [row for row in outbox(tmp_path) if row[3] is None] or None)
        assert {line["conversation"], held[1]} == {dm(ann, bob), dm(bob, cid)}
        assert len(sent(tmp_path / "push")) == 1


@pytest.fixture
async def black_hole() -> AsyncIterator[str]:
    """An HTTP endpoint that takes connections and never answers: sends to it hang."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()  # until the client goes

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_a_killed_node_leaves_its_claimed_notifications_to_the_other_sent_once(
    redis_server: RedisServer, tmp_path: Path, http: aiohttp.ClientSession, black_hole: str
) -> None:
    push = tmp_path / "push"
    common = {"MOOSIC_PUSH_DELAY": "0", "MOOSIC_PUSH_POLL": "0.1", "MOOSIC_PUSH_LEASE": str(LEASE)}
    # Node a sends through an "SNS" that never answers: it claims and hangs in the send.
    env_a = node_env(
        redis_server,
        tmp_path,
        MOOSIC_PUSH_SINK="sns",
        MOOSIC_SNS_ENDPOINT=black_hole,
        MOOSIC_SNS_APNS_ARN="arn:aws:sns:us-east-1:123456789012:app/APNS/moosic",
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        **common,
    )
    env_b = {**env_a, "MOOSIC_PUSH_SINK": "file", "MOOSIC_SNS_ENDPOINT": ""}
    a = GatewayNode(env_a, tmp_path / "node-a.log").start()
    b: GatewayNode | None = None
    try:
        ann = await register(http, "ann", base=a.base_url)
        bob = await register(http, "bob", base=a.base_url)
        cid = await register(http, "cid", base=a.base_url)
        await device(http, a, bob)
        await device(http, a, cid)
        await say(http, a, ann, dm(ann, bob), "to bob")
        await say(http, a, ann, dm(ann, cid), "to cid")
        claimed = await until(
            lambda: (
                (rows := outbox(tmp_path)) and len(rows) == 2 and all(r[3] for r in rows) and rows
            )
        )

        b = GatewayNode(env_b, tmp_path / "node-b.log").start()
        # While a lives (and its lease runs), b leaves a's claims alone.
        assert outbox(tmp_path) == claimed
        assert sent(push) == []
        a.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        a.process.wait(timeout=10)  # type: ignore[union-attr]

        lines = await until(lambda: len(sent(push)) >= 2 and sent(push), timeout=LEASE + TIMEOUT)
        await until(lambda: outbox(tmp_path) == [])
        lines = sent(push)
        assert sorted((x["user_id"], x["count"], x["body"]) for x in lines) == sorted(
            [(bob["user_id"], 1, "to bob"), (cid["user_id"], 1, "to cid")]
        )
    finally:
        a.stop()
        if b is not None:
            b.stop()


async def test_on_the_dynamodb_store_an_offline_member_gets_one_notification(
    dynamodb_local: DynamoDBLocal,
    redis_server: RedisServer,
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    prefix = f"push{uuid.uuid4().hex[:8]}-"
    create_tables(dynamodb_local, prefix)
    env = {
        **node_env(redis_server, tmp_path, MOOSIC_PUSH_DELAY="3", MOOSIC_PUSH_POLL="0.1"),
        "MOOSIC_STORE": "dynamodb",
        "MOOSIC_DYNAMODB_ENDPOINT": dynamodb_local.endpoint,
        "MOOSIC_DYNAMODB_REGION": DYNAMODB_REGION,
        "MOOSIC_DYNAMODB_TABLE_PREFIX": prefix,
        "AWS_ACCESS_KEY_ID": DYNAMODB_KEY,
        "AWS_SECRET_ACCESS_KEY": DYNAMODB_KEY,
    }
    with running_nodes(env, tmp_path) as (a, b):
        ann = await register(http, "ann", base=a.base_url)
        bob = await register(http, "bob", base=b.base_url)
        bob_device = await device(http, b, bob)
        channel = dm(ann, bob)
        for text in ("one", "two", "three"):
            await say(http, a, ann, channel, text)

        (line,) = await until(lambda: sent(tmp_path / "push"))
        assert (line["user_id"], line["device_id"], line["count"]) == (
            bob["user_id"],
            bob_device,
            3,
        )
        assert (line["body"], line["sender_name"]) == ("three", "ann")
        await say(http, b, ann, channel, "four")
        lines = await until(lambda: len(sent(tmp_path / "push")) == 2 and sent(tmp_path / "push"))
        assert (lines[1]["count"], lines[1]["body"]) == (1, "four")


async def test_a_follow_notifies_only_who_is_offline_on_every_node(
    shared_redis: SharedRedis, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    env = node_env(shared_redis, tmp_path, MOOSIC_PUSH_DELAY="1", MOOSIC_PUSH_POLL="0.1")
    with running_nodes(env, tmp_path) as (a, b):
        ann = await register(http, "ann", base=a.base_url)
        bob = await register(http, "bob", base=b.base_url)
        cid = await register(http, "cid", base=a.base_url)
        await device(http, b, bob)
        cid_device = await device(http, b, cid)
        bob_on_b = await WsClient.connect(http, bob["access_token"], url=b.base_url + "/ws")
        await bob_on_b.result("ping")
        ann_on_a = await WsClient.connect(http, ann["access_token"], url=a.base_url + "/ws")
        async with asyncio.timeout(TIMEOUT):  # node a sees bob online (presence in Redis)
            while not (await ann_on_a.result("watch_presence", users=[bob["user_id"]]))["users"][
                bob["user_id"]
            ]["online"]:
                await asyncio.sleep(0.05)

        # Through node a: bob is connected to node b, cid to none.
        for user in (bob, cid):
            async with http.put(
                f"{a.base_url}/v1/users/{user['user_id']}/follow", headers=bearer(ann)
            ) as r:
                assert r.status == 200

        (line,) = await until(lambda: sent(tmp_path / "push"))
        assert (line["user_id"], line["device_id"]) == (cid["user_id"], cid_device)
        assert (line["kind"], line["conversation"], line["title"]) == (
            "follow",
            f"follow:{cid['user_id']}",
            "ann followed you",
        )
        await until(lambda: outbox(tmp_path) == [])
        assert [x["user_id"] for x in sent(tmp_path / "push")] == [cid["user_id"]]
        await bob_on_b.ws.close()
        await ann_on_a.ws.close()
