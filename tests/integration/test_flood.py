"""A viral video: 50,000 likes from 5,000 users through two gateway processes on one Redis.

Every user opens a socket to each node and sends five likes down each at once (pipelined), so
each user's likes race each other across the two nodes; every tenth user then takes the like
back. Watchers on both nodes count the ``counts`` pushes. The test checks the issue's promises:

- exactly one of each user's ten likes says ``changed`` (the store's conditional write decides,
  whichever node it reaches first), and each unlike changes once;
- the final count is exactly 5,000 - 500 = 4,500: in the watchers' last push, in the video's
  REST read, in the stored totals once flushed, and in the like records themselves;
- each watcher got at most (duration / window + 2) counts pushes: one sweep per window for the
  whole cluster, not one push per like.

Figures (duration, requests per second, pushes) are logged at INFO: run with
``--log-cli-level=INFO`` to see them.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import jwt
import pytest

from storage.sqlite import SQLiteStore
from tests.conftest import JWT_SECRET
from tests.integration.test_slow_consumer import metric
from tests.support.clients import bearer, register
from tests.support.flood import FloodSocket, request
from tests.support.servers import GatewayNode, RedisServer

log = logging.getLogger(__name__)

USERS = 5000
LIKES_PER_NODE = 5
"""Each user sends this many likes to each of the two nodes: 10 per user, 50,000 in all."""
UNLIKE_EVERY = 10
"""Every tenth user takes the like back afterwards."""
CONCURRENT_USERS = 150
"""Users in flight at once: 300 sockets, each with its likes pipelined."""
WINDOW = 0.25
WATCHERS_PER_NODE = 3
SLACK = 2
"""Pushes allowed on top of duration / window: the window's edges, and the watchers' joins."""


@pytest.fixture
def nodes(redis_server: RedisServer, tmp_path: Path) -> Iterator[list[GatewayNode]]:
    env = {
        "MOOSIC_DEV": "1",
        "MOOSIC_JWT_SECRET": JWT_SECRET,
        "MOOSIC_SQLITE_PATH": str(tmp_path / "shared.db"),
        "MOOSIC_REDIS_URL": redis_server.url,
        "MOOSIC_REDIS_PREFIX": f"v{uuid.uuid4().hex[:8]}:",
        "MOOSIC_SCRYPT_N": "1024",
        "MOOSIC_LOG_LEVEL": "WARNING",
        "MOOSIC_RATE_LIMITS": "off",  # 10,000 sockets and 50,000 likes from one address
        # 300 handshakes in flight at once from one address: more than its cap of unsigned-in
        # connections whenever the machine is slow enough that they overlap.
        "MOOSIC_HTTP_MAX_UNAUTHENTICATED_PER_ADDRESS": "0",
        "MOOSIC_VIDEO_READY_ON_CREATE": "1",
        "MOOSIC_COUNTS_PUSH_WINDOW": str(WINDOW),
        "MOOSIC_MEDIA_DIR": str(tmp_path / "media"),
    }
    started: list[GatewayNode] = []
    try:
        for name in ("a", "b"):
            started.append(GatewayNode(env, tmp_path / f"node-{name}.log").start())
        yield started
    finally:
        for node in started:
            node.stop()


def token(user_id: str) -> str:
    now = int(time.time())
    claims = {"sub": user_id, "iat": now, "exp": now + 900, "iss": "moosic", "aud": "moosic"}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


async def pushes_sent(nodes: list[GatewayNode]) -> float:
    """The ``counts`` pushes all nodes sent so far."""
    total = 0.0
    for node in nodes:
        async with aiohttp.ClientSession(base_url=node.base_url) as client:
            total += await metric(client, "moosic_video_counts_pushes_total")
    return total


async def one_user(
    nodes: list[GatewayNode], video_id: str, user: str, unlike: bool
) -> tuple[int, bool | None]:
    """Like ten times over both nodes at once; maybe unlike. Return (changes seen, unliked)."""
    bearer_token = token(user)
    sockets = await asyncio.gather(
        *(FloodSocket.open("127.0.0.1", node.port, bearer_token) for node in nodes)
    )
    try:
        likes = b"".join(request("like", i, video_id=video_id) for i in range(LIKES_PER_NODE))
        for sock in sockets:
            sock.send(likes)
        answers = await asyncio.gather(*(s.wait_replies(LIKES_PER_NODE) for s in sockets))
        replies = [r for answer in answers for r in answer]
        assert all(r["op"] == "reply" for r in replies), replies
        changed = sum(r["result"]["changed"] for r in replies)
        unliked = None
        if unlike:
            sockets[0].send(request("unlike", LIKES_PER_NODE, video_id=video_id))
            last = (await sockets[0].wait_replies(LIKES_PER_NODE + 1))[-1]
            assert last["op"] == "reply", last
            unliked = bool(last["result"]["changed"])
        return changed, unliked
    finally:
        for sock in sockets:
            sock.close()


async def test_a_flood_of_likes_counts_exactly_and_pushes_calmly(
    nodes: list[GatewayNode], http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    a = nodes[0]
    owner = await register(http, "owner", base=a.base_url)
    async with http.post(
        a.base_url + "/v1/videos", json={"title": "viral"}, headers=bearer(owner)
    ) as response:
        assert response.status == 201
        video_id = (await response.json())["video_id"]
    watchers = []
    for node in nodes:
        for n in range(WATCHERS_PER_NODE):
            watcher = await FloodSocket.open(
                "127.0.0.1", node.port, token(f"watcher{n}{node.port}"), keep=frozenset({"counts"})
            )
            watcher.send(request("subscribe", 1, channel=f"video:{video_id}"))
            await watcher.wait_replies(1)
            watchers.append(watcher)
    expected = USERS - USERS // UNLIKE_EVERY
    slots = asyncio.Semaphore(CONCURRENT_USERS)
    pushed_before = await pushes_sent(nodes)

    async def limited(i: int) -> tuple[int, bool | None]:
        async with slots:
            return await one_user(nodes, video_id, f"fan{i}", i % UNLIKE_EVERY == 0)

    started = time.monotonic()
    results = await asyncio.wait_for(asyncio.gather(*(limited(i) for i in range(USERS))), 240)
    flooded = time.monotonic() - started

    assert [changed for changed, _ in results] == [1] * USERS  # one like per user counted
    assert all(unliked for _, unliked in results[::UNLIKE_EVERY])
    async with asyncio.timeout(30):
        while not all(w.pushes and w.pushes[-1][1]["likes"] == expected for w in watchers):
            await asyncio.sleep(0.05)
    settled = time.monotonic() - started
    async with http.get(a.base_url + f"/v1/videos/{video_id}", headers=bearer(owner)) as r:
        assert (await r.json())["likes"] == expected
    requests = USERS * (2 * LIKES_PER_NODE) + USERS // UNLIKE_EVERY
    counts = [len([p for t, p in w.pushes if t >= started]) for w in watchers]
    bound = settled / WINDOW + SLACK
    log.info(
        "flood: %d requests in %.1f s (%.0f/s) over %d sockets; last push after %.1f s; "
        "counts pushes per watcher %s (bound %.0f)",
        requests,
        flooded,
        requests / flooded,
        USERS * 2,
        settled,
        counts,
        bound,
    )
    for watcher in watchers:
        seen = [p for t, p in watcher.pushes if t >= started]
        assert len(seen) <= bound, (len(seen), bound)
        assert seen[-1]["likes"] == expected
        assert seen[-1]["viewers"] == len(watchers)
        versions = [p["version"] for p in seen]
        assert versions == sorted(versions)  # in order, from every node
        watcher.close()
    # Counted where the sweeps run: one per window for the whole cluster, whichever node.
    pushed = await pushes_sent(nodes) - pushed_before
    assert pushed <= (time.monotonic() - started) / WINDOW + SLACK

    # The stored totals converge on the exact count: the like records say so too.
    store = SQLiteStore(tmp_path / "shared.db")
    await store.open()
    try:
        async with asyncio.timeout(30):
            while (video := await store.get_video(video_id)) is None or (
                video.counts.likes != expected
            ):
                await asyncio.sleep(0.1)
        assert await store.count_likes(video_id) == expected
    finally:
        await store.close()
