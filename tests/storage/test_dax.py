"""Which reads go through DAX, and what happens when DAX is slow, down, busy or behind.

No DAX runs outside AWS, so these tests hand the store a recording double of the DAX client. The
double answers each call from DynamoDB Local with a synchronous boto3 client, the way DAX answers
from its table, and records the operation, the table and the thread it ran on. What these tests
cannot show is the real client's wire protocol and cache behaviour; both are AWS's.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aioboto3
import boto3
import pytest

from storage import ids
from storage.base import Message
from storage.dynamodb import DynamoDBConfig, DynamoDBStore, Layout
from storage.errors import NotFound
from tests.storage.conftest import local_config
from tests.storage.test_dynamodb import DAY_S, Calls, FakeClock
from tests.support.dynamodb_local import DynamoDBLocal


class RecordingDax:
    """A :class:`storage.dynamodb.DaxClient` double that records calls and answers them."""

    def __init__(self, config: DynamoDBConfig) -> None:
        self._client = boto3.client(
            "dynamodb",
            region_name=config.region,
            endpoint_url=config.endpoint_url,
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key,
        )
        self.calls: list[dict[str, Any]] = []
        self.delay = 0.0
        self.failing = False
        self.behind = False
        """Answer as a cache that has not seen the latest writes: no items at all."""
        self.gate: threading.Event | None = None
        self.closed = False

    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        return self._answer("get_item", kwargs)

    def query(self, **kwargs: Any) -> dict[str, Any]:
        return self._answer("query", kwargs)

    def batch_get_item(self, **kwargs: Any) -> dict[str, Any]:
        return self._answer("batch_get_item", kwargs)

    def close(self) -> None:
        self.closed = True
        self._client.close()

    def _answer(self, operation: str, arguments: dict[str, Any]) -> dict[str, Any]:
        table = arguments.get("TableName") or next(iter(arguments["RequestItems"]))
        self.calls.append(
            {
                "operation": operation,
                "table": table,
                "thread": threading.current_thread().name,
                "consistent": _consistent(arguments),
            }
        )
        if self.gate is not None:
            self.gate.wait(10)
        if self.delay:
            time.sleep(self.delay)
        if self.failing:
            raise ConnectionError("DAX node unreachable")
        response: dict[str, Any] = getattr(self._client, operation)(**arguments)
        if self.behind:
            response.pop("Item", None)
            if "Items" in response:
                response["Items"] = []
            if "Responses" in response:
                response["Responses"] = {name: [] for name in response["Responses"]}
        return response


def _consistent(arguments: dict[str, Any]) -> bool:
    if "RequestItems" in arguments:
        return any(r.get("ConsistentRead", False) for r in arguments["RequestItems"].values())
    return bool(arguments.get("ConsistentRead", False))


OpenStore = Callable[..., Awaitable[DynamoDBStore]]


@pytest.fixture
async def open_store(
    dynamodb_local: DynamoDBLocal, dynamodb_config: DynamoDBConfig, aws_session: aioboto3.Session
) -> AsyncIterator[OpenStore]:
    stores: list[DynamoDBStore] = []

    async def make(dax: RecordingDax | None = None, **overrides: Any) -> DynamoDBStore:
        config = local_config(dynamodb_local, dynamodb_config.table_prefix, **overrides)
        store = DynamoDBStore(
            config,
            session=aws_session,
            dax_client=dax,
            layout=Layout(offset_block=4),
            clock=FakeClock(time.time() - 10 * DAY_S),
        )
        await store.open()
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


@pytest.fixture
def dax(dynamodb_config: DynamoDBConfig) -> RecordingDax:
    return RecordingDax(dynamodb_config)


async def fill(store: DynamoDBStore, count: int) -> list[Message]:
    """Append ``count`` messages, a new day's bucket every 4, so pages cross buckets."""
    clock = store._clock
    assert isinstance(clock, FakeClock)
    written = []
    for i in range(count):
        if i % 4 == 0:
            clock.now += DAY_S
        written.append((await store.append("room:a", "u1", b'{"i":%d}' % i, None)).message)
    return written


async def walk_history(store: DynamoDBStore, limit: int) -> list[Message]:
    """Page through the whole channel, newest first."""
    found: list[Message] = []
    before = None
    while page := await store.history("room:a", limit=limit, before=before):
        found.extend(page)
        before = page[-1].id
    return found


async def test_only_history_reads_of_messages_go_through_dax(
    open_store: OpenStore, dax: RecordingDax
) -> None:
    store = await open_store(dax)
    written = await fill(store, 10)
    await store.position("room:a")
    await store.read_since("room:a", 0, limit=100)
    user = await store.create_user("erin", "h")
    await store.get_user(user.id)
    await store.get_user_by_username("erin")
    group = await store.create_group("g", user.id, ["u2"])
    await store.get_group(group.id)
    await store.is_member(group.id, "u2")
    await store.list_members(group.id, limit=10)
    await store.count_members(group.id)
    await store.add_member(group.id, "u3")
    await store.remove_member(group.id, "u3")
    await store.add_refresh_token("t1", user.id, "f1", int(time.time()) + 60)
    await store.use_refresh_token("t1", int(time.time()))
    await store.revoke_family("f1")
    assert dax.calls == []  # writes and strongly consistent reads went to DynamoDB

    assert await walk_history(store, 3) == list(reversed(written))

    assert dax.calls
    assert {c["operation"] for c in dax.calls} <= {"get_item", "query", "batch_get_item"}
    assert {c["table"] for c in dax.calls} == {f"{store._config.table_prefix}messages"}
    assert all(c["thread"].startswith("dax") for c in dax.calls)  # never the event loop's
    assert not any(c["consistent"] for c in dax.calls)
    assert store._cached is not None
    assert store._cached.fallbacks == 0


async def test_a_slow_dax_is_answered_by_dynamodb(open_store: OpenStore, dax: RecordingDax) -> None:
    store = await open_store(dax, dax_timeout=0.05)
    written = await fill(store, 6)
    dax.delay = 0.3

    started = time.monotonic()
    page = await store.history("room:a", limit=6, before=None)

    assert page == list(reversed(written))
    assert time.monotonic() - started < 0.3 * len(dax.calls)
    assert store._cached is not None
    assert store._cached.fallbacks == len(dax.calls) > 0


async def test_a_failing_dax_is_answered_by_dynamodb(
    open_store: OpenStore, dax: RecordingDax
) -> None:
    store = await open_store(dax)
    written = await fill(store, 9)
    dax.failing = True

    assert await walk_history(store, 4) == list(reversed(written))
    assert store._cached is not None
    assert store._cached.fallbacks == len(dax.calls) > 0


async def test_a_dax_that_is_behind_is_completed_by_strong_reads(
    open_store: OpenStore, dax: RecordingDax
) -> None:
    store = await open_store(dax)
    written = await fill(store, 9)
    dax.behind = True
    calls = Calls(store)

    assert await store.history("room:a", limit=5, before=written[7].id) == written[6:1:-1]
    assert await store.history("room:a", limit=20, before=None) == list(reversed(written))
    unknown = ids.IdGenerator().new(ids.timestamp_ms(written[0].id))  # same bucket, no message
    with pytest.raises(NotFound):
        await store.history("room:a", limit=5, before=unknown)

    strong = calls.take()
    assert strong["GetItem"] >= 2  # the anchors, asked of the table before any NotFound
    assert strong["Query"] >= 4  # offset index and message ranges, for both pages


async def test_reads_do_not_queue_behind_a_stuck_dax_thread(
    open_store: OpenStore, dax: RecordingDax
) -> None:
    store = await open_store(dax, dax_max_workers=1, dax_timeout=5.0)
    written = await fill(store, 5)
    dax.gate = threading.Event()

    stuck = asyncio.create_task(store.history("room:a", limit=2, before=None))
    for _ in range(500):
        if dax.calls:
            break
        await asyncio.sleep(0.01)
    assert len(dax.calls) == 1  # the only DAX thread is now waiting on the gate

    second = await asyncio.wait_for(store.history("room:a", limit=3, before=None), timeout=2)

    assert second == written[:-4:-1]
    assert not stuck.done()
    assert store._cached is not None
    assert store._cached.fallbacks >= 1
    dax.gate.set()
    assert await stuck == written[:-3:-1]


async def test_closing_the_store_closes_dax(open_store: OpenStore, dax: RecordingDax) -> None:
    store = await open_store(dax)

    await store.close()

    assert dax.closed
