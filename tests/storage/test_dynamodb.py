"""What the contract cannot see on DynamoDB: calls per publish, time buckets, lost answers.

Every test runs against DynamoDB Local. Calls are counted, and answers lost, through botocore's
public event hooks (``before-call`` / ``after-call``) on the store's client, so the requests are
real requests to a real server.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aioboto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from storage import ids
from storage.base import RefreshState
from storage.dynamodb import MAX_DATA_BYTES, DynamoDBConfig, DynamoDBStore, Layout, keys
from storage.errors import Unavailable
from tests.storage.conftest import local_config, make_tables, new_prefix
from tests.support.dynamodb_local import ACCESS_KEY, REGION, ROOT, DynamoDBLocal, free_port

DAY_S = 86_400


class FakeClock:
    """Seconds since the epoch, moved by the test."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class Calls:
    """Count the DynamoDB operations a store sends (``before-call`` hook)."""

    def __init__(self, store: DynamoDBStore) -> None:
        self.counts: Counter[str] = Counter()
        store._client.meta.events.register("before-call.dynamodb", self._record)

    def _record(self, event_name: str, **_: Any) -> None:
        self.counts[event_name.rsplit(".", 1)[-1]] += 1

    def take(self) -> Counter[str]:
        counts, self.counts = self.counts, Counter()
        return counts


def lose_answers(store: DynamoDBStore, operation: str, times: int = 1) -> list[int]:
    """Make the next ``times`` answers to ``operation`` time out after DynamoDB applied them."""
    lost = [0]

    def drop(**_: Any) -> None:
        if lost[0] < times:
            lost[0] += 1
            raise ReadTimeoutError(endpoint_url="dynamodb-local")

    store._client.meta.events.register(f"after-call.dynamodb.{operation}", drop)
    return lost


@pytest.fixture
async def open_store(
    dynamodb_config: DynamoDBConfig, aws_session: aioboto3.Session
) -> AsyncIterator[Callable[..., Awaitable[DynamoDBStore]]]:
    stores: list[DynamoDBStore] = []

    async def make(**options: Any) -> DynamoDBStore:
        store = DynamoDBStore(dynamodb_config, session=aws_session, **options)
        await store.open()
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


# -- calls per operation -----------------------------------------------------------------------


async def test_a_publish_is_one_transaction_once_the_channel_is_known(
    open_store: Callable[..., Awaitable[DynamoDBStore]],
) -> None:
    store = await open_store()
    calls = Calls(store)

    await store.append("room:a", "u1", b"{}", "c1")
    assert calls.take() == {"GetItem": 1, "TransactWriteItems": 1}  # head read once per node

    await store.append("room:a", "u1", b"{}", "c2")
    await store.append("room:a", "u1", b"{}", None)
    assert calls.take() == {"TransactWriteItems": 2}

    duplicate = await store.append("room:a", "u1", b"{}", "c1")
    assert duplicate.duplicate
    assert calls.take() == {"TransactWriteItems": 1, "BatchGetItem": 1}


async def test_appends_arriving_together_share_transactions(
    open_store: Callable[..., Awaitable[DynamoDBStore]],
) -> None:
    store = await open_store()
    await store.append("room:a", "u1", b"{}", None)
    calls = Calls(store)

    results = await asyncio.gather(
        *(store.append("room:a", "u1", b"{}", f"c{i}") for i in range(40))
    )

    assert sorted(r.message.offset for r in results) == list(range(2, 42))
    assert calls.take() == {"TransactWriteItems": 2}  # 33 + 7


async def test_repeats_inside_a_batch_cost_one_more_round(
    open_store: Callable[..., Awaitable[DynamoDBStore]],
) -> None:
    store = await open_store()
    first = [await store.append("room:a", "u1", b"{}", f"c{i}") for i in range(5)]
    calls = Calls(store)

    results = await asyncio.gather(
        *(store.append("room:a", "u1", b'{"again":1}', f"c{i}") for i in range(8)),
        store.append("room:a", "u1", b"{}", "c7"),
    )

    assert [r.duplicate for r in results] == [True] * 5 + [False] * 3 + [True]
    assert [r.message for r in results[:5]] == [r.message for r in first]
    assert [r.message.offset for r in results[5:]] == [6, 7, 8, 8]
    # One transaction cancelled by the stored client ids, one that writes the rest, one read
    # of the originals.
    assert calls.take() == {"TransactWriteItems": 2, "BatchGetItem": 1}
    assert (await store.position("room:a")).offset == 8


async def test_another_nodes_append_costs_one_more_round_and_no_read(
    open_store: Callable[..., Awaitable[DynamoDBStore]],
) -> None:
    node_a, node_b = await open_store(), await open_store()
    await node_a.append("room:a", "u1", b"{}", None)
    await node_b.append("room:a", "u2", b"{}", None)
    calls = Calls(node_a)

    result = await node_a.append("room:a", "u1", b"{}", None)

    assert result.message.offset == 3
    # The cancelled transaction returned the current head; no GetItem was needed.
    assert calls.take() == {"TransactWriteItems": 2}


async def test_read_costs(open_store: Callable[..., Awaitable[DynamoDBStore]]) -> None:
    noon = (int(time.time()) // DAY_S) * DAY_S + DAY_S // 2  # all in one day's bucket
    store = await open_store(layout=Layout(offset_block=1000), clock=FakeClock(noon))
    written = [await store.append("room:a", "u1", b"{}", None) for _ in range(30)]
    calls = Calls(store)

    await store.history("room:a", limit=20, before=None)
    assert calls.take() == {"GetItem": 1, "Query": 1}

    await store.history("room:a", limit=20, before=written[25].message.id)
    assert calls.take() == {"GetItem": 1, "Query": 1}  # sent together

    await store.read_since("room:a", 10, limit=20)
    assert calls.take() == {"Query": 2}  # offset index, then the messages' range

    await store.position("room:a")
    assert calls.take() == {"GetItem": 1}


# -- time buckets and ids ----------------------------------------------------------------------


async def test_history_and_recovery_cross_time_buckets(
    open_store: Callable[..., Awaitable[DynamoDBStore]],
) -> None:
    clock = FakeClock(time.time() - 30 * DAY_S)
    store = await open_store(clock=clock)
    written = []
    for i in range(14):
        if i % 3 == 0:
            clock.now += DAY_S + 7  # quiet channel: a few messages a day
        written.append((await store.append("room:a", "u1", b'{"i":%d}' % i, None)).message)
    assert len({keys.Layout().message_pk("room:a", m.id) for m in written}) == 5

    newest_first = list(reversed(written))
    pages = []
    before = None
    while page := await store.history("room:a", limit=4, before=before):
        pages.append(page)
        before = page[-1].id
    assert [m for page in pages for m in page] == newest_first
    assert [len(p) for p in pages] == [4, 4, 4, 2]
    assert await store.history("room:a", limit=100, before=None) == newest_first
    assert await store.read_since("room:a", 2, limit=100) == written[2:]


async def test_ids_keep_growing_when_another_nodes_clock_runs_ahead(
    open_store: Callable[..., Awaitable[DynamoDBStore]],
) -> None:
    fast = await open_store(clock=FakeClock(time.time() + 2 * DAY_S))
    slow = await open_store()

    ahead = await fast.append("room:a", "u1", b"{}", None)
    behind = await slow.append("room:a", "u2", b"{}", None)

    assert behind.message.offset == 2
    assert behind.message.id > ahead.message.id
    assert abs(behind.message.ts - time.time() * 1000) < 60_000  # ts stays this node's time
    assert await slow.history("room:a", limit=10, before=None) == [behind.message, ahead.message]
    assert await slow.history("room:a", limit=10, before=behind.message.id) == [ahead.message]


# -- answers lost after the write was applied --------------------------------------------------


async def test_a_publish_whose_answer_was_lost_is_stored_once(
    open_store: Callable[..., Awaitable[DynamoDBStore]],
) -> None:
    store = await open_store()
    await store.append("room:a", "u1", b"{}", None)
    lost = lose_answers(store, "TransactWriteItems")

    result = await store.append("room:a", "u1", b'{"x":1}', None)

    assert lost == [1]
    assert (result.message.offset, result.duplicate) == (2, False)
    assert [m.offset for m in await store.read_since("room:a", 0, limit=10)] == [1, 2]
    assert (await store.position("room:a")).offset == 2


async def test_a_token_use_whose_answer_was_lost_is_not_reuse(
    open_store: Callable[..., Awaitable[DynamoDBStore]],
) -> None:
    store = await open_store()
    now = int(time.time())
    await store.add_refresh_token("t1", "u1", "f1", now + 60)
    lose_answers(store, "PutItem")
    await store.add_refresh_token("t2", "u1", "f1", now + 60)  # no Conflict with itself
    lose_answers(store, "UpdateItem")

    use = await store.use_refresh_token("t1", now)

    assert use.state is RefreshState.OK
    assert (await store.use_refresh_token("t2", now)).state is RefreshState.OK
    assert (await store.use_refresh_token("t1", now)).state is RefreshState.REUSED


async def test_account_and_membership_writes_whose_answers_were_lost(
    open_store: Callable[..., Awaitable[DynamoDBStore]],
) -> None:
    store = await open_store()
    lose_answers(store, "TransactWriteItems", times=2)

    user = await store.create_user("dora", "h")
    group = await store.create_group("g", user.id, [])
    added = await store.add_member(group.id, "u2")

    assert await store.get_user_by_username("dora") == user
    assert added
    assert await store.count_members(group.id) == 2


@pytest.mark.parametrize(
    "fault",
    [
        ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "GetItem"),
        ReadTimeoutError(endpoint_url="dynamodb-local"),
    ],
    ids=["throttled", "timed-out"],
)
async def test_a_fault_that_does_not_pass_is_unavailable_after_the_last_attempt(
    dynamodb_local: DynamoDBLocal, dynamodb_config: DynamoDBConfig, fault: Exception
) -> None:
    config = local_config(dynamodb_local, dynamodb_config.table_prefix, max_attempts=3)
    store = DynamoDBStore(config)
    await store.open()
    try:
        attempts = []

        def fail(**_: Any) -> None:
            attempts.append(time.monotonic())
            raise fault

        store._client.meta.events.register("before-call.dynamodb.GetItem", fail)
        with pytest.raises(Unavailable, match="3 times") as raised:
            await store.position("room:a")
        assert len(attempts) == 3
        assert raised.value.__cause__ is fault
    finally:
        await store.close()


# -- configuration and lifecycle ---------------------------------------------------------------


async def test_an_unreachable_endpoint_is_unavailable() -> None:
    config = DynamoDBConfig(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        access_key_id=ACCESS_KEY,
        secret_access_key=ACCESS_KEY,
        region=REGION,
        max_attempts=2,
        backoff_base=0.001,
        connect_timeout=0.5,
        call_timeout=2.0,
    )
    store = DynamoDBStore(config)

    assert not await store.ping()
    with pytest.raises(Unavailable):
        await store.open()
    with pytest.raises(Unavailable):
        await store.append("room:a", "u1", b"{}", None)


async def test_missing_tables_are_reported_at_open(dynamodb_local: DynamoDBLocal) -> None:
    store = DynamoDBStore(local_config(dynamodb_local, "absent-"))

    with pytest.raises(Unavailable, match="create-tables"):
        await store.open()


async def test_a_body_too_large_for_an_item_is_refused_before_any_call(
    open_store: Callable[..., Awaitable[DynamoDBStore]],
) -> None:
    store = await open_store()
    calls = Calls(store)

    with pytest.raises(ValueError, match="at most"):
        await store.append("room:a", "u1", b"{" + b" " * MAX_DATA_BYTES + b"}", None)
    largest = await store.append("room:a", "u1", b"{" + b" " * (MAX_DATA_BYTES - 2) + b"}", None)

    assert largest.message.offset == 1
    assert calls.take() == {"GetItem": 1, "TransactWriteItems": 1}


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        DynamoDBConfig(max_attempts=0)
    with pytest.raises(ValueError, match="table_prefix"):
        DynamoDBConfig(table_prefix="bad prefix")
    with pytest.raises(ValueError, match="go together"):
        DynamoDBConfig(access_key_id="a")


def test_create_tables_command(dynamodb_local: DynamoDBLocal) -> None:
    prefix = f"cli{new_prefix()}"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": ACCESS_KEY,
        "MOOSIC_DYNAMODB_REGION": REGION,
        "MOOSIC_DYNAMODB_TABLE_PREFIX": prefix,
    }
    command = [sys.executable, "-m", "storage.dynamodb", "create-tables"]
    command += ["--endpoint", dynamodb_local.endpoint]

    options: dict[str, Any] = {"env": env, "cwd": ROOT, "capture_output": True, "text": True}
    first = subprocess.run(command, check=False, timeout=60, **options)
    second = subprocess.run(command, check=False, timeout=60, **options)

    assert first.returncode == 0, first.stderr
    names = [f"{prefix}{t}" for t in keys.TABLES]
    assert sorted(first.stdout.splitlines()) == sorted(f"{n}: created" for n in names)
    assert sorted(second.stdout.splitlines()) == sorted(f"{n}: exists" for n in names)


async def test_tables_made_by_the_schema_serve_a_store(dynamodb_local: DynamoDBLocal) -> None:
    config = local_config(dynamodb_local, new_prefix())
    await make_tables(config)
    await make_tables(config)  # again: nothing to do

    store = DynamoDBStore(config)
    await store.open()
    try:
        assert await store.ping()
    finally:
        await store.close()
    assert not await store.ping()


# -- key layout --------------------------------------------------------------------------------


def test_keys_of_different_names_never_collide() -> None:
    names = ["a", "a#", "#a", "a#b", "1:a", "a#1:b", ""]
    client_keys = {
        keys.client_pk(channel, sender, cmid)
        for channel in names
        for sender in names
        for cmid in names
    }
    assert len(client_keys) == len(names) ** 3
    message_id = ids.IdGenerator().new()
    layout = Layout()
    message_keys = {layout.message_pk(c, message_id) for c in names}
    offset_keys = {layout.offset_pk(c, 1) for c in names}
    assert len(message_keys) == len(offset_keys) == len(names)
    assert not message_keys & offset_keys


def test_next_id_is_the_next_in_text_order() -> None:
    generator = ids.IdGenerator()
    for identifier in [generator.new(), "0" * 25 + "Z", "01ZZZZZZZZZZZZZZZZZZZZZZZZ"]:
        following = keys.next_id(identifier)
        assert following > identifier
        assert ids.is_valid(following)
    assert keys.next_id("0" * 25 + "Z") == "0" * 24 + "10"
    with pytest.raises(ValueError, match="no id after"):
        keys.next_id("Z" * 26)
