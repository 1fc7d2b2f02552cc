"""Two gateway processes on the DynamoDB store (DynamoDB Local) and Redis, restarted mid-way."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import JWT_SECRET
from tests.support.clients import PASSWORD, WsClient, bearer, register
from tests.support.dynamodb_local import ACCESS_KEY, REGION, DynamoDBLocal
from tests.support.servers import ROOT, GatewayNode, RedisServer

MESSAGES = 30


def create_tables(server: DynamoDBLocal, prefix: str) -> None:
    """Make the tables with the documented command, as an operator would."""
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": ACCESS_KEY}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "storage.dynamodb",
            "create-tables",
            "--endpoint",
            server.endpoint,
            "--region",
            REGION,
            "--prefix",
            prefix,
        ],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )


async def test_history_survives_restarts_without_duplicates(
    dynamodb_local: DynamoDBLocal,
    redis_server: RedisServer,
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    prefix = f"e2e{uuid.uuid4().hex[:8]}-"
    create_tables(dynamodb_local, prefix)
    env = {
        "MOOSIC_DEV": "1",
        "MOOSIC_JWT_SECRET": JWT_SECRET,
        "MOOSIC_STORE": "dynamodb",
        "MOOSIC_DYNAMODB_ENDPOINT": dynamodb_local.endpoint,
        "MOOSIC_DYNAMODB_REGION": REGION,
        "MOOSIC_DYNAMODB_TABLE_PREFIX": prefix,
        "MOOSIC_REDIS_URL": redis_server.url,
        "MOOSIC_REDIS_PREFIX": prefix,
        "MOOSIC_SCRYPT_N": "1024",
        "MOOSIC_LOG_LEVEL": "WARNING",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": ACCESS_KEY,
    }
    a = GatewayNode(env, tmp_path / "a.log").start()
    b = GatewayNode(env, tmp_path / "b.log").start()
    try:
        alice = await register(http, "alice", base=a.base_url)
        bob = await register(http, "bob", base=b.base_url)
        dm = "dm:" + ":".join(sorted([alice["user_id"], bob["user_id"]]))
        listener = await WsClient.connect(http, bob["access_token"], url=b.base_url + "/ws")
        await listener.result("subscribe", channel=dm)
        sender = await WsClient.connect(http, alice["access_token"], url=a.base_url + "/ws")
        for n in range(MESSAGES):
            first = await sender.result("publish", channel=dm, data={"n": n}, client_msg_id=f"c{n}")
            if n % 5 == 0:  # a phone retrying after a lost reply
                again = await sender.result(
                    "publish", channel=dm, data={"n": n}, client_msg_id=f"c{n}"
                )
                assert again["duplicate"] is True
                assert again["message_id"] == first["message_id"]
            assert first["offset"] == n + 1
        live = [await listener.next_event() for _ in range(MESSAGES)]
        assert [e["data"]["n"] for e in live] == list(range(MESSAGES))
        # Each publish (retries too) was one timed store call on the DynamoDB backend.
        async with http.get(f"{a.base_url}/metrics") as r:
            scraped = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(await r.text())
                for s in family.samples
            }
        appends = (("backend", "dynamodb"), ("operation", "append"))
        assert scraped[("moosic_store_latency_seconds_count", appends)] == MESSAGES + MESSAGES // 5
        await listener.close()
        await sender.close()
    finally:
        a.stop()
        b.stop()

    a = GatewayNode(env, tmp_path / "a2.log").start()
    b = GatewayNode(env, tmp_path / "b2.log").start()
    try:
        async with http.post(
            f"{b.base_url}/v1/auth/login", json={"username": "bob", "password": PASSWORD}
        ) as r:
            assert r.status == 200
            bob = await r.json()
        seen: list[int] = []
        before = None
        while True:
            url = f"{b.base_url}/v1/channels/{dm}/messages?limit=7" + (
                f"&before={before}" if before else ""
            )
            async with http.get(url, headers=bearer(bob)) as r:
                page = await r.json()
                assert r.status == 200, page
            seen += [m["data"]["n"] for m in page["messages"]]
            before = page["next_before"]
            if before is None:
                break
        assert seen == list(reversed(range(MESSAGES)))
        # The channel carries on from where it was, on either node.
        writer = await WsClient.connect(http, bob["access_token"], url=a.base_url + "/ws")
        reply = await writer.result("publish", channel=dm, data={"n": MESSAGES})
        assert reply["offset"] == MESSAGES + 1
        await writer.close()
    finally:
        a.stop()
        b.stop()
