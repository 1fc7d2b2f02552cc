"""One new video reaches 5,000 followers, 1,000 of them online across two gateway processes.

Two processes share one SQLite file and one Redis. 5,000 followers (tokens minted with the test
secret: registering them through scrypt would measure scrypt) follow the author: 100 through
the real API on both nodes, the rest through the store in one go. 1,000 of them hold a socket,
half on each node, subscribed to their ``user:`` channel. The author posts on node A. Checks:

- the request that made the video ready returns before the fan-out is done;
- each online follower gets exactly one ``feed`` push, whichever node holds its socket, and the
  nodes pushed 1,000 in all (offline followers get none);
- every follower's feed page shows the video once (read on both nodes);
- the nodes wrote exactly one feed item per follower.

Figures (time to the last push) are logged at INFO: ``--log-cli-level=INFO``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from storage.sqlite import SQLiteStore
from tests.conftest import JWT_SECRET
from tests.integration.test_flood import token
from tests.integration.test_slow_consumer import metric
from tests.support.clients import bearer, register
from tests.support.flood import FloodSocket, request
from tests.support.servers import GatewayNode, RedisServer

log = logging.getLogger(__name__)
T = TypeVar("T")

FOLLOWERS = 5000
ONLINE = 1000
THROUGH_API = 100
CONCURRENCY = 100


@pytest.fixture
def nodes(redis_server: RedisServer, tmp_path: Path) -> Iterator[list[GatewayNode]]:
    env = {
        "MOOSIC_DEV": "1",
        "MOOSIC_JWT_SECRET": JWT_SECRET,
        "MOOSIC_SQLITE_PATH": str(tmp_path / "shared.db"),
        "MOOSIC_REDIS_URL": redis_server.url,
        "MOOSIC_REDIS_PREFIX": f"f{uuid.uuid4().hex[:8]}:",
        "MOOSIC_SCRYPT_N": "1024",
        "MOOSIC_LOG_LEVEL": "WARNING",
        "MOOSIC_RATE_LIMITS": "off",  # thousands of sockets and requests from one address
        "MOOSIC_HTTP_MAX_UNAUTHENTICATED_PER_ADDRESS": "0",  # and their handshakes at once
        "MOOSIC_VIDEO_READY_ON_CREATE": "1",
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


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


async def bounded(jobs: list[Coroutine[Any, Any, T]], limit: int = CONCURRENCY) -> list[T]:
    """Run the jobs with at most ``limit`` in flight."""
    slots = asyncio.Semaphore(limit)

    async def run(job: Coroutine[Any, Any, T]) -> T:
        async with slots:
            return await job

    return list(await asyncio.gather(*(run(job) for job in jobs)))


async def total(nodes: list[GatewayNode], name: str) -> float:
    found = 0.0
    for node in nodes:
        async with aiohttp.ClientSession(base_url=node.base_url) as client:
            found += await metric(client, name)
    return found


async def test_a_video_reaches_5000_followers_and_the_1000_online_once_each(
    nodes: list[GatewayNode], http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    a = nodes[0]
    author = await register(http, "author", base=a.base_url)
    author_id = author["user_id"]
    followers = [f"fan{i:05d}" for i in range(FOLLOWERS)]

    async def follow_via_api(index: int, user: str) -> None:
        node = nodes[index % 2]
        headers = {"Authorization": f"Bearer {token(user)}"}
        async with http.put(
            f"{node.base_url}/v1/users/{author_id}/follow", headers=headers
        ) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["changed"] is True

    await bounded([follow_via_api(i, u) for i, u in enumerate(followers[:THROUGH_API])])
    store = SQLiteStore(tmp_path / "shared.db")
    await store.open()
    try:
        for user in followers[THROUGH_API:]:
            await store.follow(user, author_id)
        assert (await store.follow_counts(author_id)).followers == FOLLOWERS
    finally:
        await store.close()

    # Every fifth follower is online: half on each node, each subscribed to its user: channel.
    online = followers[::5]
    assert len(online) == ONLINE

    async def connect(index: int, user: str) -> FloodSocket:
        node = nodes[index % 2]
        sock = await FloodSocket.open("127.0.0.1", node.port, token(user), keep=frozenset({"feed"}))
        sock.send(request("subscribe", 1, channel=f"user:{user}"))
        (reply,) = await sock.wait_replies(1)
        assert reply["op"] == "reply", reply
        return sock

    sockets = await bounded([connect(i, u) for i, u in enumerate(online)])
    try:
        started = time.monotonic()
        async with http.post(
            a.base_url + "/v1/videos", json={"title": "for everyone"}, headers=bearer(author)
        ) as response:
            assert response.status == 201
            video_id = (await response.json())["video_id"]
        answered = time.monotonic()

        async with asyncio.timeout(30):
            while sum(len(s.pushes) for s in sockets) < ONLINE:
                await asyncio.sleep(0.01)
        reached = max(s.pushes[0][0] for s in sockets)
        log.info(
            "answered in %.1f ms; the last of %d online followers reached after %.1f ms",
            (answered - started) * 1000,
            ONLINE,
            (reached - started) * 1000,
        )
        assert answered < reached, "the request waited for the fan-out"
        await asyncio.sleep(0.3)  # any second push would arrive by now
        for sock in sockets:
            assert len(sock.pushes) == 1
            push = sock.pushes[0][1]
            assert (push["item_id"], push["by"]) == (video_id, author_id)
    finally:
        for sock in sockets:
            sock.close()

    assert await total(nodes, "moosic_feed_pushes_total") == ONLINE
    assert await total(nodes, "moosic_feed_items_written_total") == FOLLOWERS

    async def feed_of(index: int, user: str) -> None:
        node = nodes[index % 2]
        headers = {"Authorization": f"Bearer {token(user)}"}
        async with http.get(f"{node.base_url}/v1/feed", headers=headers) as response:
            page = await response.json()
            assert response.status == 200, page
        assert [item["video"]["video_id"] for item in page["items"]] == [video_id], user

    await bounded([feed_of(i, u) for i, u in enumerate(followers)])
