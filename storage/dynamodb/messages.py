"""Messages and channels on DynamoDB: appends by group commit per channel, history, heads.

Appending a message is one ``TransactWriteItems`` call in the steady state. The call moves the
channel head (last offset and last message id) from the value this node last saw to the new
one, under a condition that the head is still what the node saw; in the same transaction it puts
the message, its offset-index entry and, with a client message id, the idempotency record under
``attribute_not_exists``. So offsets stay gap-free and unique across nodes, a retried publish is
recognised without a read first, and nothing is acknowledged before all of it is stored.

Appends to one channel on one node are queued and written in order by one task, several per
transaction when they arrive together (group commit, up to :data:`MAX_BATCH`): per-channel
throughput is then a few transactions per round trip rather than one message per round trip,
and two appends of the same node never race each other for the same offset. When another node
moved the head, the cancelled transaction returns the current head (``ALL_OLD``) and the batch
is retried on top of it, without an extra read.

Message ids grow with offsets within a channel (a new id is made greater than the channel's last
id even when another node's clock runs ahead), so "sorted by id" and "sorted by offset" agree,
and a history page below a message is a range of the message's time bucket.

``docs/storage.md`` has the table design, the cost of each operation and the consistency of
each read.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aioboto3

from storage import ids
from storage.base import AppendResult, ChannelPosition, Message
from storage.conversations import dm_users, is_conversation
from storage.dynamodb import keys
from storage.dynamodb.base import (
    BATCH_GET_KEYS,
    CONDITION_FAILED,
    MAX_TRANSACT_ACTIONS,
    DynamoDBBase,
    Head,
    head_from,
)
from storage.dynamodb.config import DynamoDBConfig
from storage.dynamodb.conversations import append_updates
from storage.dynamodb.dax import DaxClient
from storage.dynamodb.keys import Item, Layout, b, get_b, get_n, get_s, n, opt_s, s
from storage.errors import NotFound, StorageError, Unavailable

log = logging.getLogger("storage.dynamodb.store")

MAX_DATA_BYTES = 384 * 1024
"""Largest message body: a DynamoDB item holds at most 400 KB, keys and attributes included."""
MAX_BATCH = 33
"""Messages per append transaction: 1 head update + 3 items each stay within 100 actions."""
MAX_BATCH_BYTES = 3 * 1024 * 1024
"""Message bytes per append transaction, below the 4 MB a transaction may carry."""
CONTENTION_ATTEMPTS = 25
"""Rounds an append batch may lose to other nodes' appends before it gives up."""

ClientKey = tuple[str, str]
"""(sender, client message id): what makes an append a repeat within a channel."""


@dataclass(eq=False, slots=True)
class _Pending:
    """One append waiting for its channel's writer."""

    sender: str
    data: bytes
    client_msg_id: str | None
    future: asyncio.Future[AppendResult]


@dataclass(slots=True)
class _Queue:
    pending: deque[_Pending] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


class DynamoDBMessages(DynamoDBBase):
    """:class:`storage.base.MessageStore` on DynamoDB (the ``messages`` and ``channels`` tables)."""

    def __init__(
        self,
        config: DynamoDBConfig,
        *,
        session: aioboto3.Session | None = None,
        dax_client: DaxClient | None = None,
        layout: Layout | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(config, session=session, dax_client=dax_client, layout=layout, clock=clock)
        self._heads: OrderedDict[str, Head] = OrderedDict()
        self._queues: dict[str, _Queue] = {}

    # -- lifecycle -------------------------------------------------------------------------

    async def close(self) -> None:
        """Let queued appends finish (bounded), then release DAX and the HTTP client."""
        tasks = [q.task for q in self._queues.values() if q.task is not None]
        if tasks:
            bound = self._config.call_timeout * self._config.max_attempts
            _, late = await asyncio.wait(tasks, timeout=bound)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        await super().close()

    # -- messages: writing -----------------------------------------------------------------

    async def append(
        self, channel: str, sender: str, data: bytes, client_msg_id: str | None
    ) -> AppendResult:
        if len(data) > MAX_DATA_BYTES:
            raise ValueError(f"a message body holds at most {MAX_DATA_BYTES} bytes on DynamoDB")
        if self._client is None:
            raise Unavailable("the DynamoDB store is not open")
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(channel)
        if queue is None:
            queue = self._queues[channel] = _Queue()
        queue.pending.append(_Pending(sender, data, client_msg_id, future))
        if queue.task is None:
            queue.task = asyncio.create_task(self._drain(channel, queue), name=f"append {channel}")
        # A cancelled caller cancels only its wait: a batch already sent is stored anyway (and
        # the client, never acknowledged, retries with the same client message id).
        return await future

    async def _drain(self, channel: str, queue: _Queue) -> None:
        """Write the channel's queued appends in order, batch by batch, until none is left."""
        try:
            while queue.pending:
                batch = _take_batch(queue.pending, channel)
                if not batch:
                    continue
                try:
                    results = await self._commit(channel, batch)
                except asyncio.CancelledError:
                    _fail(batch, Unavailable("the DynamoDB store closed during the append"))
                    raise
                except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
                    _fail(batch, exc)
                else:
                    for pending, result in zip(batch, results, strict=True):
                        if not pending.future.done():
                            pending.future.set_result(result)
        finally:
            _fail(queue.pending, Unavailable("the DynamoDB store closed during the append"))
            queue.pending.clear()
            queue.task = None
            if self._queues.get(channel) is queue:
                del self._queues[channel]

    async def _commit(self, channel: str, batch: list[_Pending]) -> list[AppendResult]:
        """Store ``batch`` with the channel's next offsets; return one result per append.

        Each round sends one transaction. A round cancelled by idempotency records sets those
        appends aside as duplicates of what is stored; a round cancelled by the head condition
        carries on from the head the cancellation returned. Within the batch, a second append
        with the same client id is a duplicate of the first.
        """
        head = await self._head(channel)
        written: dict[_Pending, Message] = {}
        stored: dict[ClientKey, str] = {}
        """Client ids found in the table -> id of the message first stored with them."""
        lost_rounds = 0
        while True:
            writers: dict[ClientKey | _Pending, _Pending] = {}
            for pending in batch:
                key = _client_key(pending)
                if key is None:
                    writers[pending] = pending
                elif key not in stored:
                    writers.setdefault(key, pending)
            if not writers:
                break
            plan, new_head, items, client_items = self._plan(channel, head, writers.values())
            reasons = await self._transact(items, f"append to {channel}")
            if reasons is None:
                head = new_head
                self._remember(channel, head)
                written.update(plan)
                break
            if reasons[0].get("Code") == CONDITION_FAILED:
                # Another node moved the head: carry on from where it is now.
                head = head_from(reasons[0].get("Item"))
                self._remember(channel, head)
            duplicates = {
                key: get_s(reasons[position]["Item"], "id")
                for position, key in client_items
                if position < len(reasons)
                and reasons[position].get("Code") == CONDITION_FAILED
                and "Item" in reasons[position]
            }
            stored.update(duplicates)
            if not duplicates:
                lost_rounds += 1
                if lost_rounds >= CONTENTION_ATTEMPTS:
                    raise Unavailable(f"channel {channel} is too busy; appends kept conflicting")
                if lost_rounds > 1:  # the first retry goes at once: it has the fresh head
                    await asyncio.sleep(self._policy.delay(lost_rounds - 2))

        epoch = head.epoch if head is not None else ""
        originals = await self._messages_by_id(channel, list(stored.values()))
        first_with: dict[ClientKey, Message] = {}
        for pending, message in written.items():
            key = _client_key(pending)
            if key is not None:
                first_with[key] = message
        results: list[AppendResult] = []
        for pending in batch:
            if pending in written:
                results.append(AppendResult(written[pending], epoch, duplicate=False))
                continue
            key = _client_key(pending)
            original = None
            if key is not None:
                original = originals.get(stored[key]) if key in stored else first_with.get(key)
            if original is None:
                raise StorageError(f"channel {channel}: the first message of a client id is gone")
            results.append(AppendResult(original, epoch, duplicate=True))
        return results

    def _plan(
        self, channel: str, head: Head | None, writers: Iterable[_Pending]
    ) -> tuple[list[tuple[_Pending, Message]], Head, list[Item], list[tuple[int, ClientKey]]]:
        """Lay out one append transaction on top of ``head``.

        Returns the messages to write, the head after them, the transaction's items and the
        positions of the idempotency records within them.
        """
        now = self._now_ms()
        layout = self._layout
        messages_table = self._tables[keys.MESSAGES]
        offset = head.offset if head is not None else 0
        last_id = head.last_id if head is not None else ""
        epoch = head.epoch if head is not None else secrets.token_hex(4)
        plan: list[tuple[_Pending, Message]] = []
        items: list[Item] = [{}]  # the head update goes first, filled in below
        client_items: list[tuple[int, ClientKey]] = []
        for pending in writers:
            offset += 1
            message_id = self._ids.new(now)
            if message_id <= last_id:
                # Another node's clock is ahead: keep ids growing with offsets anyway.
                message_id = keys.next_id(last_id)
            last_id = message_id
            message = Message(
                id=message_id,
                channel=channel,
                offset=offset,
                sender=pending.sender,
                data=pending.data,
                client_msg_id=pending.client_msg_id,
                ts=now,
            )
            plan.append((pending, message))
            record: Item = {
                "pk": s(layout.message_pk(channel, message_id)),
                "sk": s(message_id),
                "off": n(offset),
                "sender": s(pending.sender),
                "data": b(pending.data),
                "ts": n(now),
            }
            if pending.client_msg_id is not None:
                record["cmid"] = s(pending.client_msg_id)
            items.append({"Put": {"TableName": messages_table, "Item": record}})
            items.append(
                {
                    "Put": {
                        "TableName": messages_table,
                        "Item": {
                            "pk": s(layout.offset_pk(channel, offset)),
                            "sk": s(keys.offset_sk(offset)),
                            "id": s(message_id),
                        },
                    }
                }
            )
            if pending.client_msg_id is not None:
                client_items.append((len(items), (pending.sender, pending.client_msg_id)))
                pk = keys.client_pk(channel, pending.sender, pending.client_msg_id)
                items.append(
                    {
                        "Put": {
                            "TableName": messages_table,
                            "Item": {
                                "pk": s(pk),
                                "sk": s("c"),
                                "id": s(message_id),
                                "off": n(offset),
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        }
                    }
                )
        values: dict[str, Any] = {":o": n(offset), ":i": s(last_id)}
        if head is None:
            update = "SET last_offset = :o, last_id = :i, epoch = :e"
            condition = "attribute_not_exists(pk)"
            values[":e"] = s(epoch)
        else:
            update = "SET last_offset = :o, last_id = :i"
            condition = "last_offset = :p"
            values[":p"] = n(head.offset)
        items[0] = {
            "Update": {
                "TableName": self._tables[keys.CHANNELS],
                "Key": {"pk": s(channel)},
                "UpdateExpression": update,
                "ConditionExpression": condition,
                "ExpressionAttributeValues": values,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
        if is_conversation(channel):
            sent = [(message.sender, message.offset) for _, message in plan]
            items.extend(
                append_updates(
                    self._tables[keys.GROUPS], channel, sent, created=head is None, now=now
                )
            )
        return plan, Head(offset, last_id, epoch), items, client_items

    async def _head(self, channel: str) -> Head | None:
        """Return the channel head this node saw last, or read it (strongly) once."""
        head = self._heads.get(channel)
        if head is not None:
            self._heads.move_to_end(channel)
            return head
        head = await self._read_head(channel, consistent=True)
        self._remember(channel, head)
        return head

    def _remember(self, channel: str, head: Head | None) -> None:
        if head is None:
            self._heads.pop(channel, None)
            return
        self._heads[channel] = head
        self._heads.move_to_end(channel)
        while len(self._heads) > self._config.channel_cache_size:
            self._heads.popitem(last=False)

    # -- messages: reading -----------------------------------------------------------------

    async def history(self, channel: str, *, limit: int, before: str | None) -> list[Message]:
        seed: list[Message]
        if before is not None:
            if not ids.is_valid(before):
                raise NotFound(f"no message {before} in {channel}")
            # The anchor and the page below it are read together: both are immutable, and a
            # page within one time bucket then costs one round trip.
            anchor_read = self._message(channel, before, cached=True)
            page_read = self._bucket_page(channel, before, limit, inclusive=False)
            anchor, seed = await asyncio.gather(anchor_read, page_read)
            if anchor is None:
                # DAX and eventually consistent reads may not have it yet: ask the table.
                anchor = await self._message(channel, before, cached=False)
            if anchor is None:
                raise NotFound(f"no message {before} in {channel}")
            top = anchor.offset - 1
        else:
            # The head changes with every append, so it is read from the table (never from a
            # cache that could hide the newest messages); the page under it is immutable.
            head = await self._read_head(channel, consistent=True)
            if head is None or limit <= 0:
                return []
            top = head.offset
            seed = await self._bucket_page(channel, head.last_id, limit, inclusive=True)
        if limit <= 0 or top <= 0:
            return []
        return await self._complete(channel, top, max(1, top - limit + 1), seed)

    async def _bucket_page(
        self, channel: str, anchor: str, limit: int, *, inclusive: bool
    ) -> list[Message]:
        """Read up to ``limit`` messages at or below ``anchor`` in its time bucket, newest first."""
        if limit <= 0:
            return []
        response = await self._read(
            "query",
            {
                "TableName": self._tables[keys.MESSAGES],
                "KeyConditionExpression": f"pk = :pk AND sk {'<=' if inclusive else '<'} :id",
                "ExpressionAttributeValues": {
                    ":pk": s(self._layout.message_pk(channel, anchor)),
                    ":id": s(anchor),
                },
                "ScanIndexForward": False,
                "Limit": limit,
            },
        )
        return [_message_from(channel, item) for item in response.get("Items", [])]

    async def _complete(
        self, channel: str, top: int, low: int, seed: list[Message]
    ) -> list[Message]:
        """Return offsets ``top`` down to ``low``, filling what ``seed`` lacks by offset.

        A page that spans time buckets, or that an eventually consistent read returned short,
        is completed through the offset index: first through the cache, then, for anything
        still missing, with strongly consistent reads of the table.
        """
        found = {m.offset: m for m in seed if low <= m.offset <= top}
        for cached in (True, False):
            missing = [o for o in range(top, low - 1, -1) if o not in found]
            if not missing:
                break
            found.update(await self._by_offsets(channel, missing[-1], missing[0], cached=cached))
        lost = [o for o in range(top, low - 1, -1) if o not in found]
        if lost:
            log.error("channel %s: offsets %s are indexed but not stored", channel, lost)
        return [found[o] for o in range(top, low - 1, -1) if o in found]

    async def _by_offsets(
        self, channel: str, low: int, high: int, *, cached: bool
    ) -> dict[int, Message]:
        """Read the messages with offsets ``low``..``high`` through the offset index."""
        pairs = await self._offset_ids(channel, low, high, limit=None, cached=cached)
        messages = await self._messages_in_ranges(channel, pairs, cached=cached)
        return {m.offset: m for m in messages.values()}

    async def _offset_ids(
        self, channel: str, low: int, high: int | None, *, limit: int | None, cached: bool
    ) -> list[tuple[int, str]]:
        """Return ``(offset, id)`` from ``low`` upwards (to ``high``, or ``limit`` of them).

        Without ``high`` the walk stops at the first offset block that ends early: offsets are
        gap-free, so a block that is not full is the channel's last.
        """
        pairs: list[tuple[int, str]] = []
        start = low
        while high is None or start <= high:
            block_end = self._layout.block_end(start)
            stop = block_end if high is None else min(block_end, high)
            want = None if limit is None else limit - len(pairs)
            if want is not None and want <= 0:
                break
            got = await self._query_offsets(channel, start, stop, want, cached=cached)
            pairs.extend(got)
            if high is None and (not got or got[-1][0] < block_end):
                break
            start = block_end + 1
        return pairs

    async def _query_offsets(
        self, channel: str, low: int, high: int, limit: int | None, *, cached: bool
    ) -> list[tuple[int, str]]:
        items = await self._query_all(
            {
                "TableName": self._tables[keys.MESSAGES],
                "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
                "ExpressionAttributeValues": {
                    ":pk": s(self._layout.offset_pk(channel, low)),
                    ":low": s(keys.offset_sk(low)),
                    ":high": s(keys.offset_sk(high)),
                },
            },
            limit=limit,
            cached=cached,
        )
        return [(int(get_s(i, "sk")), get_s(i, "id")) for i in items]

    async def _messages_in_ranges(
        self, channel: str, pairs: list[tuple[int, str]], *, cached: bool
    ) -> dict[str, Message]:
        """Fetch the messages of consecutive offsets: one range query per time bucket.

        Ids grow with offsets, so the messages of consecutive offsets that share a bucket are
        exactly the bucket's range between the first and the last id. A query is charged for
        the bytes it reads (0.5 RCU per 4 KB eventually consistent), where ``BatchGetItem``
        charges every item as at least 4 KB: for small chat messages ranges cost a tenth.
        """
        groups: dict[str, list[str]] = {}
        for _, message_id in sorted(pairs):
            groups.setdefault(self._layout.message_pk(channel, message_id), []).append(message_id)

        async def read(pk: str, members: list[str]) -> list[Item]:
            return await self._query_all(
                {
                    "TableName": self._tables[keys.MESSAGES],
                    "KeyConditionExpression": "pk = :pk AND sk BETWEEN :first AND :last",
                    "ExpressionAttributeValues": {
                        ":pk": s(pk),
                        ":first": s(members[0]),
                        ":last": s(members[-1]),
                    },
                },
                limit=len(members),
                cached=cached,
            )

        found: dict[str, Message] = {}
        for items in await asyncio.gather(*(read(pk, m) for pk, m in groups.items())):
            for item in items:
                message = _message_from(channel, item)
                found[message.id] = message
        return found

    async def _messages_by_id(self, channel: str, message_ids: list[str]) -> dict[str, Message]:
        """Fetch scattered messages by id (strongly), ``BATCH_GET_KEYS`` per call, in parallel."""
        unique = list(dict.fromkeys(message_ids))
        chunks = [unique[i : i + BATCH_GET_KEYS] for i in range(0, len(unique), BATCH_GET_KEYS)]
        found: dict[str, Message] = {}
        for items in await asyncio.gather(*(self._batch_get(channel, c) for c in chunks)):
            for item in items:
                message = _message_from(channel, item)
                found[message.id] = message
        return found

    async def _batch_get(self, channel: str, message_ids: list[str]) -> list[Item]:
        table = self._tables[keys.MESSAGES]
        wanted = [self._layout.message_key(channel, i) for i in message_ids]
        request: dict[str, Any] = {table: {"Keys": wanted, "ConsistentRead": True}}
        items: list[Item] = []
        for attempt in range(self._policy.attempts):
            if attempt:
                await asyncio.sleep(self._policy.delay(attempt - 1))
            response = await self._call("batch_get_item", {"RequestItems": request})
            items.extend(response.get("Responses", {}).get(table, []))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return items
        raise Unavailable("DynamoDB batch_get_item kept leaving keys unprocessed")

    async def _message(self, channel: str, message_id: str, *, cached: bool) -> Message | None:
        arguments: dict[str, Any] = {
            "TableName": self._tables[keys.MESSAGES],
            "Key": self._layout.message_key(channel, message_id),
        }
        if cached:
            response = await self._read("get_item", arguments)
        else:
            response = await self._call("get_item", {**arguments, "ConsistentRead": True})
        item = response.get("Item")
        return None if item is None else _message_from(channel, item)

    async def read_since(self, channel: str, offset: int, *, limit: int) -> list[Message]:
        if limit <= 0:
            return []
        # Recovery must see everything acknowledged: strongly consistent reads of the table.
        pairs = await self._offset_ids(channel, max(offset, 0) + 1, None, limit=limit, cached=False)
        messages = await self._messages_in_ranges(channel, pairs, cached=False)
        result = [messages[i] for _, i in pairs if i in messages]
        if len(result) != len(pairs):
            log.error("channel %s: indexed messages missing after offset %d", channel, offset)
        return result

    async def position(self, channel: str) -> ChannelPosition:
        head = await self._read_head(channel, consistent=True)
        return ChannelPosition(0, "") if head is None else ChannelPosition(head.offset, head.epoch)

    async def positions(self, channels: list[str]) -> dict[str, ChannelPosition]:
        heads = await self._heads_of(channels)
        found = dict.fromkeys(channels, ChannelPosition(0, ""))
        for channel, head in heads.items():
            found[channel] = ChannelPosition(head.offset, head.epoch)
        return found

    async def _heads_of(self, channels: list[str]) -> dict[str, Head]:
        """Read many channel heads (strongly), ``BATCH_GET_KEYS`` per call, in parallel."""
        found = await self._get_many([(keys.CHANNELS, {"pk": s(c)}) for c in channels])
        heads: dict[str, Head] = {}
        for _, item in found:
            head = head_from(item)
            if head is not None:
                heads[get_s(item, "pk")] = head
        return heads


def _take_batch(pending: deque[_Pending], channel: str) -> list[_Pending]:
    """Take the next appends to write together, skipping callers that stopped waiting.

    A batch stays within :data:`MAX_BATCH` messages, :data:`MAX_BATCH_BYTES` and the actions of
    one transaction: the head update, 2 or 3 items per message, and in DM and group channels
    one read-position update per sender (plus room for a new DM's two list entries).
    """
    conversation = is_conversation(channel)
    actions = 1 + (2 if dm_users(channel) is not None else 0)
    senders: set[str] = set()
    batch: list[_Pending] = []
    size = 0
    while pending and len(batch) < MAX_BATCH:
        head = pending[0]
        if head.future.done():
            pending.popleft()
            continue
        cost = 2 if head.client_msg_id is None else 3
        if conversation and head.sender not in senders:
            cost += 1
        if batch and (
            size + len(head.data) > MAX_BATCH_BYTES or actions + cost > MAX_TRANSACT_ACTIONS
        ):
            break
        batch.append(pending.popleft())
        size += len(head.data)
        actions += cost
        senders.add(head.sender)
    return batch


def _fail(pending: Iterable[_Pending], exc: BaseException) -> None:
    for item in pending:
        if not item.future.done():
            item.future.set_exception(exc)


def _client_key(pending: _Pending) -> ClientKey | None:
    if pending.client_msg_id is None:
        return None
    return (pending.sender, pending.client_msg_id)


def _message_from(channel: str, item: Item) -> Message:
    return Message(
        id=get_s(item, "sk"),
        channel=channel,
        offset=get_n(item, "off"),
        sender=get_s(item, "sender"),
        data=get_b(item, "data"),
        client_msg_id=opt_s(item, "cmid"),
        ts=get_n(item, "ts"),
    )
