"""Shared fixtures: settings with small limits, the real app over real sockets, real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvloop
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.guard.ratelimit import RateLimits
from gateway.settings import Settings
from tests.support.dynamodb_local import DynamoDBLocal
from tests.support.moto_server import MotoServer
from tests.support.redis_cluster import RedisCluster
from tests.support.servers import TEST_JWT_SECRET, RedisServer, SharedRedis

JWT_SECRET = TEST_JWT_SECRET
TEST_RATE_LIMITS = RateLimits.parse("publish=off")
PASSWORD = "correct horse battery"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.of(
        dev=True,
        jwt_secret=JWT_SECRET,
        sqlite_path=str(tmp_path / "moosic.db"),
        media_dir=str(tmp_path / "media"),
        clickstream_dir=str(tmp_path / "clickstream"),
        mail_dir=str(tmp_path / "mail"),
        push_dir=str(tmp_path / "push"),
        scrypt_n=2**10,
        ws_heartbeat=30.0,
        ws_close_timeout=2.0,
        shutdown_timeout=2.0,
        # Tests of other features publish far faster than people type: the publish budget is
        # lifted for them; every other default limit stays on. test_abuse.py runs them all.
        rate_limits=TEST_RATE_LIMITS,
    )


ClientFactory = Callable[..., Any]


@pytest.fixture
async def make_client(aiohttp_client: Any, settings: Settings) -> Callable[..., Any]:
    """Start the real app with ``settings`` changed by keyword; return its test client."""

    async def make(**changes: Any) -> TestClient[Any, Any]:
        return await aiohttp_client(create_app(settings.changed(**changes)))  # type: ignore[no-any-return]

    return make


@pytest.fixture
async def client(make_client: Callable[..., Any]) -> TestClient[Any, Any]:
    return await make_client()  # type: ignore[no-any-return]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client session for tests that talk to gateway processes."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


@pytest.fixture(scope="session")
def dynamodb_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DynamoDBLocal]:
    """One DynamoDB Local for the whole run, started on first use and always stopped."""
    server = DynamoDBLocal.start(tmp_path_factory.mktemp("dynamodb-local"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto server over HTTP for the AWS services without a local twin (S3, SQS, Kinesis)."""
    server = MotoServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real Redis Cluster (3 primaries, 3 replicas) for tests that do not break it."""
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session", params=["redis", "cluster"])
def shared_redis(request: pytest.FixtureRequest) -> SharedRedis:
    """What several gateway nodes share, in both modes: one Redis, and a Redis Cluster."""
    name = "redis_server" if request.param == "redis" else "redis_cluster"
    shared: SharedRedis = request.getfixturevalue(name)
    return shared


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Run every test on uvloop, the loop the gateway runs on in production."""
    return {"uvloop": uvloop.new_event_loop}
