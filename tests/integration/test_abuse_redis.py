"""Limits and revocations shared by every node through Redis (real processes, real Redis)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.guard.ratelimit import Limiter, RateLimits, Rule
from gateway.metrics import Metrics
from storage.redis.client import RedisClient
from tests.conftest import JWT_SECRET
from tests.integration.test_abuse import closed_with
from tests.integration.test_ws import token_for
from tests.support.clients import PASSWORD, WsClient, bearer, register
from tests.support.servers import GatewayNode, RedisServer, SharedRedis, free_port

TIMEOUT = 20.0


def node_env(redis: SharedRedis, tmp_path: Path, prefix: str) -> dict[str, str]:
    return {
        "MOOSIC_DEV": "1",
        "MOOSIC_JWT_SECRET": JWT_SECRET,
        "MOOSIC_SQLITE_PATH": str(tmp_path / "shared.db"),
        "MOOSIC_REDIS_URL": redis.url,
        **({"MOOSIC_REDIS_CLUSTER": "1"} if redis.cluster else {}),
        "MOOSIC_REDIS_PREFIX": prefix,
        "MOOSIC_LOG_LEVEL": "WARNING",
        "MOOSIC_SCRYPT_N": "1024",
        "MOOSIC_RATE_LIMITS": "publish=6/1h,login=4/1h",
    }


@pytest.fixture(scope="module")
def cluster(
    shared_redis: SharedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, str], Path, list[GatewayNode]]]:
    """Two nodes sharing one Redis, and (the second time) a Redis Cluster."""
    work = tmp_path_factory.mktemp("abuse-redis")
    env = node_env(shared_redis, work, f"a{uuid.uuid4().hex[:8]}:")
    nodes = [GatewayNode(env, work / f"{name}.log").start() for name in ("a", "b")]
    yield env, work, nodes
    for node in nodes:
        node.stop()


async def test_a_publish_budget_is_one_across_nodes(cluster: Any, http: Any) -> None:
    _env, _work, (a, b) = cluster
    on_a = await WsClient.connect(http, token_for("poster"), url=a.base_url + "/ws")
    on_b = await WsClient.connect(http, token_for("poster"), url=b.base_url + "/ws")
    for n in range(3):
        await on_a.result("publish", channel="room:shared", data={"n": n})
        await on_b.result("publish", channel="room:shared", data={"n": n})
    for conn in (on_a, on_b):
        error = await conn.call("publish", channel="room:shared", data={"n": 99})
        assert error["code"] == "rate_limited"
        assert error["retry_after"] > 0
        await conn.close()


async def test_credential_stuffing_is_counted_across_nodes(cluster: Any, http: Any) -> None:
    _env, _work, (a, b) = cluster
    for node in (a, b, a, b):
        async with http.post(
            node.base_url + "/v1/auth/login", json={"username": "nobody", "password": PASSWORD}
        ) as r:
            assert r.status == 401
    for node in (a, b):
        async with http.post(
            node.base_url + "/v1/auth/login", json={"username": "nobody", "password": PASSWORD}
        ) as r:
            assert (r.status, (await r.json())["code"]) == (429, "rate_limited")


async def test_logout_on_one_node_ends_the_session_on_every_node(cluster: Any, http: Any) -> None:
    env, work, (a, b) = cluster
    account = await register(http, "leaver", base=a.base_url)
    ws_b = await http.ws_connect(b.base_url + "/ws", headers=bearer(account))
    assert "ts" in await WsClient(ws_b).result("ping")

    async with http.post(a.base_url + "/v1/auth/logout", headers=bearer(account)) as r:
        assert r.status == 200
    assert await closed_with(ws_b) == 4501  # closed by the other node
    async with http.get(b.base_url + "/v1/me", headers=bearer(account)) as r:
        assert (r.status, (await r.json())["code"]) == (401, "session_revoked")

    # A node started afterwards knows it from its first request (it reads the list at start).
    c = GatewayNode(env, work / "c.log").start()
    try:
        async with http.get(c.base_url + "/v1/me", headers=bearer(account)) as r:
            assert (r.status, (await r.json())["code"]) == (401, "session_revoked")
    finally:
        c.stop()


async def test_the_bucket_script_on_real_redis(redis_server: RedisServer) -> None:
    prefix = f"s{uuid.uuid4().hex[:8]}:"
    broker = RedisClient(redis_server.url)
    limiter = Limiter(
        RateLimits.of({"publish": Rule(3, 3600)}), Metrics(), redis=broker, prefix=prefix
    )
    try:
        waits = [await limiter.acquire("publish", "u1") for _ in range(4)]
        assert waits[:3] == [0.0, 0.0, 0.0]
        assert 1100 < waits[3] <= 1200  # one token per 1200 s
        assert await limiter.acquire("publish", "u2") == 0.0
        assert await limiter.acquire("unlimited", "u1") == 0.0
    finally:
        await broker.close()


async def test_while_redis_is_away_each_node_decides_alone() -> None:
    dead = RedisClient(f"redis://127.0.0.1:{free_port()}/0", timeout=1.0)
    metrics = Metrics()
    limiter = Limiter(RateLimits.of({"publish": Rule(2, 3600)}), metrics, redis=dead)
    try:
        waits = [await limiter.acquire("publish", "u1") for _ in range(3)]
    finally:
        await dead.close()
    assert waits[:2] == [0.0, 0.0]
    assert waits[2] > 0
    assert metrics.rate_limit_fallbacks == 3


async def test_a_logout_by_refresh_token_reaches_the_other_node(cluster: Any, http: Any) -> None:
    _env, _work, (a, b) = cluster
    account = await register(http, "traveller", base=b.base_url)
    async with http.post(
        b.base_url + "/v1/auth/logout", json={"refresh_token": account["refresh_token"]}
    ) as r:
        assert r.status == 200
    async with asyncio.timeout(TIMEOUT):
        while True:  # node A learns it from the stream within about a second
            async with http.get(a.base_url + "/v1/me", headers=bearer(account)) as r:
                if r.status == 401:
                    assert (await r.json())["code"] == "session_revoked"
                    break
            await asyncio.sleep(0.05)
