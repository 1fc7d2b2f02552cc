"""Read positions and conversation lists on DynamoDB: calls, transaction sizes, lost answers.

What the contract suite cannot see: how many requests each operation sends, that appends to DM
and group channels still go out as one transaction within DynamoDB's 100 actions, and the
paths taken only when an answer is lost or an item holds an unusual value.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aioboto3
import pytest

from storage.dynamodb import DynamoDBConfig, DynamoDBStore, keys
from storage.dynamodb.base import MAX_TRANSACT_ACTIONS
from tests.storage.test_dynamodb import Calls, lose_answers

OpenStore = Callable[..., Awaitable[DynamoDBStore]]
DM = "dm:u1:u2"


class TransactionSizes:
    """Record the number of actions of every ``TransactWriteItems`` a store sends."""

    def __init__(self, store: DynamoDBStore) -> None:
        self.sizes: list[int] = []
        store._client.meta.events.register(
            "provide-client-params.dynamodb.TransactWriteItems", self._record
        )

    def _record(self, params: dict[str, Any], **_: Any) -> None:
        self.sizes.append(len(params["TransactItems"]))


@pytest.fixture
async def open_store(
    dynamodb_config: DynamoDBConfig, aws_session: aioboto3.Session
) -> AsyncIterator[OpenStore]:
    stores: list[DynamoDBStore] = []

    async def make(**options: Any) -> DynamoDBStore:
        store = DynamoDBStore(dynamodb_config, session=aws_session, **options)
        await store.open()
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


async def test_a_dm_or_group_publish_is_still_one_transaction(open_store: OpenStore) -> None:
    store = await open_store()
    calls = Calls(store)
    sizes = TransactionSizes(store)

    await store.append(DM, "u1", b"{}", "c1")
    # Head, message, offset entry, client id, and both users' list entries (the sender's
    # carries its read position).
    assert calls.take() == {"GetItem": 1, "TransactWriteItems": 1}
    assert sizes.sizes == [6]

    await store.append(DM, "u2", b"{}", None)
    await store.append("group:g1", "u3", b"{}", None)
    await store.append("group:g1", "u3", b"{}", None)
    await store.append("room:a", "u3", b"{}", None)
    assert calls.take() == {"GetItem": 2, "TransactWriteItems": 4}  # 2 new heads
    assert sizes.sizes[1:] == [4, 4, 4, 3]  # + the sender's read position in DMs and groups


async def test_appends_from_many_senders_share_transactions_within_the_action_limit(
    open_store: OpenStore,
) -> None:
    store = await open_store()
    sizes = TransactionSizes(store)

    results = await asyncio.gather(
        *(store.append("group:g1", f"user{i:02d}", b"{}", f"c{i}") for i in range(40))
    )

    assert sorted(r.message.offset for r in results) == list(range(1, 41))
    assert len(sizes.sizes) == 2
    assert max(sizes.sizes) <= MAX_TRANSACT_ACTIONS
    senders = [f"user{i:02d}" for i in range(40)]
    offsets = {r.message.sender: r.message.offset for r in results}
    for sender in senders:
        assert await store.read_positions(sender, ["group:g1"]) == {"group:g1": offsets[sender]}


async def test_read_and_list_costs(open_store: OpenStore) -> None:
    store = await open_store()
    group = await store.create_group("g", "u2", ["u1"])
    for _ in range(3):
        await store.append(DM, "u1", b"{}", None)
    await store.append(f"group:{group.id}", "u1", b"{}", None)
    calls = Calls(store)

    assert (await store.mark_read("u2", DM, 2)).moved
    assert calls.take() == {"GetItem": 1, "UpdateItem": 1}  # head, then the conditional write
    assert not (await store.mark_read("u2", DM, 1)).moved
    assert calls.take() == {"GetItem": 1, "UpdateItem": 1}  # refused by its condition

    listed = await store.list_conversations("u2", limit=50, before=None)
    assert [c.channel for c in listed] == [DM, f"group:{group.id}"]
    assert calls.take() == {"Query": 1, "BatchGetItem": 1}  # heads and group names together

    await store.read_positions("u2", [DM, "group:x"])
    assert calls.take() == {"BatchGetItem": 1}
    await store.positions([DM, "room:none"])
    assert calls.take() == {"BatchGetItem": 1}


async def test_a_mark_read_whose_answer_was_lost_still_moved(open_store: OpenStore) -> None:
    store = await open_store()
    for _ in range(3):
        await store.append(DM, "u1", b"{}", None)
    lost = lose_answers(store, "UpdateItem")

    mark = await store.mark_read("u2", DM, 2)

    assert lost == [1]
    assert (mark.last_read, mark.moved) == (2, True)
    assert not (await store.mark_read("u2", DM, 2)).moved


async def test_adding_back_a_member_keeps_a_higher_read_position(open_store: OpenStore) -> None:
    store = await open_store()
    group = await store.create_group("g", "owner", [])
    channel = f"group:{group.id}"
    await store.append(channel, "owner", b"{}", None)
    # Not reachable through the store (read positions never pass the last offset), but the
    # write must not lower one that did.
    await store._client.update_item(
        TableName=store._tables[keys.GROUPS],
        Key={"pk": {"S": keys.conversation_pk("u1")}, "sk": {"S": channel}},
        UpdateExpression="SET last_read = :r",
        ExpressionAttributeValues={":r": {"N": "50"}},
    )

    assert await store.add_member(group.id, "u1")

    assert await store.read_positions("u1", [channel]) == {channel: 50}
    assert [c.channel for c in await store.list_conversations("u1", limit=5, before=None)] == [
        channel
    ]
    assert await store.count_members(group.id) == 2
