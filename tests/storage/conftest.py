"""Fixtures for the storage tests: each backend, opened on fresh data, and DynamoDB Local.

``make_store`` opens stores on the same data, so a test can play two gateway nodes; ``store``
is the first of them. The DynamoDB backend gets its own table prefix per test and a small
offset block, so a handful of messages crosses index partitions.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aioboto3
import pytest

from storage.base import Store
from storage.dynamodb import DynamoDBConfig, DynamoDBStore, Layout, create_tables
from storage.sqlite import SQLiteStore
from tests.support.dynamodb_local import ACCESS_KEY, REGION, DynamoDBLocal

MakeStore = Callable[..., Awaitable[Store]]
TEST_LAYOUT = Layout(offset_block=5)
_prefixes = itertools.count()


@pytest.fixture(scope="session")
def aws_session() -> aioboto3.Session:
    """One session for all clients: each new one would load botocore's models again."""
    return aioboto3.Session()


def local_config(server: DynamoDBLocal, prefix: str, **overrides: Any) -> DynamoDBConfig:
    """Return a config for DynamoDB Local with short timeouts and quick retries."""
    settings: dict[str, Any] = {
        "region": REGION,
        "endpoint_url": server.endpoint,
        "table_prefix": prefix,
        "access_key_id": ACCESS_KEY,
        "secret_access_key": ACCESS_KEY,
        "read_timeout": 10.0,
        "call_timeout": 15.0,
        "backoff_base": 0.005,
        "backoff_cap": 0.05,
    }
    settings.update(overrides)
    return DynamoDBConfig(**settings)


async def make_tables(config: DynamoDBConfig, session: aioboto3.Session | None = None) -> None:
    session = session or aioboto3.Session()
    async with session.client(
        "dynamodb",
        region_name=config.region,
        endpoint_url=config.endpoint_url,
        aws_access_key_id=config.access_key_id,
        aws_secret_access_key=config.secret_access_key,
    ) as client:
        await create_tables(client, config.table_prefix)


def new_prefix() -> str:
    return f"t{next(_prefixes)}-"


@pytest.fixture
async def dynamodb_config(
    dynamodb_local: DynamoDBLocal, aws_session: aioboto3.Session
) -> DynamoDBConfig:
    """A config whose tables exist and are empty."""
    config = local_config(dynamodb_local, new_prefix())
    await make_tables(config, aws_session)
    return config


@pytest.fixture(params=["sqlite", "dynamodb"])
def backend(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


@pytest.fixture
async def make_store(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[MakeStore]:
    """Open stores of ``backend`` on one set of data; all are closed after the test."""
    opened: list[Store] = []
    config: DynamoDBConfig | None = None
    session: aioboto3.Session | None = None
    if backend == "dynamodb":
        # Looked up only here, so an SQLite-only run never starts DynamoDB Local.
        server: DynamoDBLocal = request.getfixturevalue("dynamodb_local")
        session = request.getfixturevalue("aws_session")
        config = local_config(server, new_prefix())
        await make_tables(config, session)

    async def make(**options: Any) -> Store:
        store: Store
        if config is None:
            store = SQLiteStore(tmp_path / "moosic.db")
        else:
            store = DynamoDBStore(config, session=session, layout=TEST_LAYOUT, **options)
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in reversed(opened):
        await store.close()


@pytest.fixture
async def store(make_store: MakeStore) -> Store:
    return await make_store()
