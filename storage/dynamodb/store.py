"""The DynamoDB backend of :class:`storage.base.Store`, on aioboto3, with optional DAX reads.

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
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from storage import ids
from storage.base import (
    AppendResult,
    ChannelPosition,
    Conversation,
    Group,
    Message,
    ReadMark,
    RefreshState,
    RefreshUse,
    StoreHealth,
    User,
)
from storage.conversations import dm_users, group_channel, group_id, is_conversation, list_key
from storage.dynamodb import keys
from storage.dynamodb.config import DynamoDBConfig
from storage.dynamodb.dax import CachedReads, DaxClient, connect_dax
from storage.dynamodb.follows import DynamoDBFollows
from storage.dynamodb.keys import Item, Layout, b, boolean, get_b, get_n, get_s, n, opt_s, s
from storage.dynamodb.retry import (
    CANCELLATION_RETRYABLE,
    RetryPolicy,
    error_code,
    rejected,
    with_retries,
)
from storage.dynamodb.schema import table_name
from storage.dynamodb.videos import DynamoDBVideos
from storage.errors import Conflict, NotFound, StorageError, Unavailable

log = logging.getLogger(__name__)

MAX_DATA_BYTES = 384 * 1024
"""Largest message body: a DynamoDB item holds at most 400 KB, keys and attributes included."""
MAX_BATCH = 33
"""Messages per append transaction: 1 head update + 3 items each stay within 100 actions."""
MAX_TRANSACT_ACTIONS = 100
"""Actions per ``TransactWriteItems`` call (DynamoDB's limit)."""
MAX_BATCH_BYTES = 3 * 1024 * 1024
"""Message bytes per append transaction, below the 4 MB a transaction may carry."""
BATCH_GET_KEYS = 100
"""Keys per ``BatchGetItem`` call (DynamoDB's limit)."""
BATCH_WRITE_ITEMS = 25
"""Items per ``BatchWriteItem`` call (DynamoDB's limit)."""
CONTENTION_ATTEMPTS = 25
"""Rounds an append batch may lose to other nodes' appends before it gives up."""

_CONDITION_FAILED = "ConditionalCheckFailed"
_CONDITION_FAILED_EXC = frozenset({"ConditionalCheckFailedException"})
_CANCELLED_EXC = frozenset({"TransactionCanceledException"})


ClientKey = tuple[str, str]
"""(sender, client message id): what makes an append a repeat within a channel."""


@dataclass(frozen=True, slots=True)
class _Head:
    """A channel's last offset, last message id and epoch, as one node last saw them."""

    offset: int
    last_id: str
    epoch: str


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


class DynamoDBStore(DynamoDBVideos, DynamoDBFollows):
    """:class:`storage.base.Store` on DynamoDB tables named ``{table_prefix}{table}``.

    ``session`` (an ``aioboto3.Session``) may be shared with other AWS clients of the process;
    building one loads botocore's service models, which takes tens of milliseconds.
    ``dax_client`` replaces the DAX client built from ``config.dax_endpoint``; tests pass a
    recording double here, since no DAX runs outside AWS. ``layout`` and ``clock`` (seconds
    since the epoch) exist for tests too: production keeps the defaults.
    """

    def __init__(
        self,
        config: DynamoDBConfig,
        *,
        session: aioboto3.Session | None = None,
        dax_client: DaxClient | None = None,
        layout: Layout | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._layout = layout or Layout()
        self._clock = clock
        self._policy = RetryPolicy(config.max_attempts, config.backoff_base, config.backoff_cap)
        self._tables = {t: table_name(config.table_prefix, t) for t in keys.TABLES}
        self._session = session
        self._dax_client = dax_client
        self._ids = ids.IdGenerator()
        self._client: Any = None
        self._stack: AsyncExitStack | None = None
        self._cached: CachedReads | None = None
        self._heads: OrderedDict[str, _Head] = OrderedDict()
        self._queues: dict[str, _Queue] = {}

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, check that every table exists, and connect DAX when configured."""
        config = self._config
        stack = AsyncExitStack()
        try:
            session = self._session or aioboto3.Session()
            self._client = await stack.enter_async_context(
                session.client(
                    "dynamodb",
                    region_name=config.region,
                    endpoint_url=config.endpoint_url,
                    aws_access_key_id=config.access_key_id,
                    aws_secret_access_key=config.secret_access_key,
                    config=Config(
                        connect_timeout=config.connect_timeout,
                        read_timeout=config.read_timeout,
                        max_pool_connections=config.max_connections,
                        # Our retry loop is the only one (storage/dynamodb/retry.py).
                        retries={"total_max_attempts": 1, "mode": "standard"},
                    ),
                )
            )
            self._stack = stack
            await asyncio.gather(*(self._check_table(name) for name in self._tables.values()))
            dax = self._dax_client
            if dax is None and config.dax_endpoint is not None:
                dax = await asyncio.to_thread(
                    connect_dax,
                    config.dax_endpoint,
                    config.region,
                    config.dax_timeout,
                    config.dax_timeout,
                )
            if dax is not None:
                self._cached = CachedReads(
                    dax,
                    max_workers=config.dax_max_workers,
                    timeout=config.dax_timeout,
                    fallback=self._call,
                )
        except BaseException:
            self._client = None
            self._stack = None
            await stack.aclose()
            raise

    async def _check_table(self, name: str) -> None:
        try:
            await self._call("describe_table", {"TableName": name})
        except Unavailable as exc:
            raise Unavailable(f"DynamoDB table {name} is unavailable: {exc}") from exc

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
        if self._cached is not None:
            await asyncio.to_thread(self._cached.close)
            self._cached = None
        if self._stack is not None:
            stack, self._stack = self._stack, None
            self._client = None
            await stack.aclose()

    async def ping(self) -> bool:
        """Read one (absent) item: cheap, and it proves the table answers."""
        if self._client is None:
            return False
        try:
            async with asyncio.timeout(self._config.call_timeout):
                await self._client.get_item(
                    TableName=self._tables[keys.CHANNELS], Key={"pk": s("#ping")}
                )
        except (ClientError, BotoCoreError, TimeoutError, OSError):
            return False
        return True

    def health(self) -> StoreHealth:
        """Always healthy: DynamoDB keeps no local state to break; :meth:`ping` asks the table.

        Every write is acknowledged by DynamoDB itself, so a failing one already raises
        ``Unavailable`` and nothing unkept is acknowledged.
        """
        return StoreHealth(healthy=self._client is not None)

    # -- calls -----------------------------------------------------------------------------

    async def _call(
        self,
        operation: str,
        arguments: dict[str, Any],
        *,
        expected: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """Call DynamoDB with retries; error codes in ``expected`` reach the caller as is."""
        client = self._client
        if client is None:
            raise Unavailable("the DynamoDB store is not open")
        method = getattr(client, operation)
        try:
            result: dict[str, Any] = await with_retries(
                lambda: method(**arguments),
                what=operation,
                policy=self._policy,
                timeout=self._config.call_timeout,
            )
        except ClientError as exc:
            if error_code(exc) in expected:
                raise
            raise rejected(operation, exc) from exc
        return result

    async def _read(self, operation: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """An eventually consistent read of immutable items: through DAX when there is one."""
        if self._cached is not None:
            return await self._cached.call(operation, arguments)
        return await self._call(operation, arguments)

    async def _transact(self, items: list[Item], what: str) -> list[dict[str, Any]] | None:
        """Run one write transaction; return the cancellation reasons when a condition failed.

        A transaction cancelled only by conflicts or throttling is run again (with a new
        idempotency token: a cancelled one did nothing); a timeout is retried inside
        :meth:`_call` with the same token, so a transaction applied just before its answer was
        lost is not applied twice.
        """
        last: ClientError | None = None
        for attempt in range(self._policy.attempts):
            if attempt:
                await asyncio.sleep(self._policy.delay(attempt - 1))
            try:
                await self._call(
                    "transact_write_items",
                    {"TransactItems": items, "ClientRequestToken": uuid.uuid4().hex},
                    expected=_CANCELLED_EXC,
                )
            except ClientError as exc:
                reasons: list[dict[str, Any]] = exc.response.get("CancellationReasons") or []
                codes = {r.get("Code") for r in reasons}
                if _CONDITION_FAILED in codes:
                    return reasons
                if not codes & CANCELLATION_RETRYABLE:
                    raise rejected(what, exc) from exc
                last = exc
            else:
                return None
        raise Unavailable(f"DynamoDB {what}: transaction kept conflicting") from last

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

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
            if reasons[0].get("Code") == _CONDITION_FAILED:
                # Another node moved the head: carry on from where it is now.
                head = _head_from(reasons[0].get("Item"))
                self._remember(channel, head)
            duplicates = {
                key: get_s(reasons[position]["Item"], "id")
                for position, key in client_items
                if position < len(reasons)
                and reasons[position].get("Code") == _CONDITION_FAILED
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
        self, channel: str, head: _Head | None, writers: Iterable[_Pending]
    ) -> tuple[list[tuple[_Pending, Message]], _Head, list[Item], list[tuple[int, ClientKey]]]:
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
            items.extend(self._conversation_updates(channel, sent, created=head is None, now=now))
        return plan, _Head(offset, last_id, epoch), items, client_items

    def _conversation_updates(
        self, channel: str, sent: list[tuple[str, int]], *, created: bool, now: int
    ) -> list[Item]:
        """The actions that keep read positions and lists in step with an append transaction.

        Each sender's read position moves to their last message in the transaction, and a DM's
        first transaction lists the channel for both its users. One action per user (a
        transaction may touch an item once). ``last_read`` is set without a condition (which
        would cancel the append): it never exceeds the channel's last offset, and these offsets
        are above it, so the set only ever raises it.
        """
        latest: dict[str, int] = {}
        for sender, offset in sent:
            latest[sender] = max(latest.get(sender, 0), offset)
        listed = (dm_users(channel) if created else None) or ()
        updates: list[Item] = []
        for user in dict.fromkeys([*latest, *listed]):
            values: dict[str, Any] = {}
            if user in latest:
                parts = ["last_read = :r"]
                values[":r"] = n(latest[user])
            else:
                parts = ["last_read = if_not_exists(last_read, :r)"]
                values[":r"] = n(0)
            if user in listed:
                parts.append("joined = if_not_exists(joined, :j)")
                values[":j"] = s(list_key(now, channel))
            updates.append(
                {
                    "Update": {
                        "TableName": self._tables[keys.GROUPS],
                        "Key": self._conversation_key(user, channel),
                        "UpdateExpression": "SET " + ", ".join(parts),
                        "ExpressionAttributeValues": values,
                    }
                }
            )
        return updates

    async def _head(self, channel: str) -> _Head | None:
        """Return the channel head this node saw last, or read it (strongly) once."""
        head = self._heads.get(channel)
        if head is not None:
            self._heads.move_to_end(channel)
            return head
        head = await self._read_head(channel, consistent=True)
        self._remember(channel, head)
        return head

    async def _read_head(self, channel: str, *, consistent: bool) -> _Head | None:
        response = await self._call(
            "get_item",
            {
                "TableName": self._tables[keys.CHANNELS],
                "Key": {"pk": s(channel)},
                "ConsistentRead": consistent,
            },
        )
        return _head_from(response.get("Item"))

    def _remember(self, channel: str, head: _Head | None) -> None:
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

    async def _query_all(
        self, arguments: dict[str, Any], *, limit: int | None, cached: bool
    ) -> list[Item]:
        """Run a query page by page until ``limit`` items (or all of them) are read."""
        arguments = dict(arguments)
        if not cached:
            arguments["ConsistentRead"] = True
        items: list[Item] = []
        while True:
            if limit is not None:
                arguments["Limit"] = limit - len(items)
            if cached:
                response = await self._read("query", arguments)
            else:
                response = await self._call("query", arguments)
            items.extend(response.get("Items", []))
            last_key = response.get("LastEvaluatedKey")
            if not last_key or (limit is not None and len(items) >= limit):
                return items
            arguments["ExclusiveStartKey"] = last_key

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

    async def _heads_of(self, channels: list[str]) -> dict[str, _Head]:
        """Read many channel heads (strongly), ``BATCH_GET_KEYS`` per call, in parallel."""
        found = await self._get_many([(keys.CHANNELS, {"pk": s(c)}) for c in channels])
        heads: dict[str, _Head] = {}
        for _, item in found:
            head = _head_from(item)
            if head is not None:
                heads[get_s(item, "pk")] = head
        return heads

    async def _get_many(self, wanted: list[tuple[str, Item]]) -> list[tuple[str, Item]]:
        """Read items of any tables by key (strongly): ``BatchGetItem``, chunks in parallel.

        ``wanted`` holds (table, key) pairs; the answer holds (table, item) for those found.
        """
        unique: dict[tuple[str, str, str], tuple[str, Item]] = {}
        for table, key in wanted:
            identity = (table, get_s(key, "pk"), opt_s(key, "sk") or "")
            unique.setdefault(identity, (table, key))
        pairs = list(unique.values())
        chunks = [pairs[i : i + BATCH_GET_KEYS] for i in range(0, len(pairs), BATCH_GET_KEYS)]
        names = {self._tables[table]: table for table in keys.TABLES}

        async def read(chunk: list[tuple[str, Item]]) -> list[tuple[str, Item]]:
            request: dict[str, Any] = {}
            for table, key in chunk:
                entry = request.setdefault(
                    self._tables[table], {"Keys": [], "ConsistentRead": True}
                )
                entry["Keys"].append(key)
            got: list[tuple[str, Item]] = []
            for attempt in range(self._policy.attempts):
                if attempt:
                    await asyncio.sleep(self._policy.delay(attempt - 1))
                response = await self._call("batch_get_item", {"RequestItems": request})
                for name, items in response.get("Responses", {}).items():
                    got.extend((names[name], item) for item in items)
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    return got
            raise Unavailable("DynamoDB batch_get_item kept leaving keys unprocessed")

        found: list[tuple[str, Item]] = []
        for got in await asyncio.gather(*(read(chunk) for chunk in chunks)):
            found.extend(got)
        return found

    # -- read positions and conversation lists ---------------------------------------------

    def _conversation_key(self, user_id: str, channel: str) -> Item:
        return {"pk": s(keys.conversation_pk(user_id)), "sk": s(channel)}

    async def mark_read(self, user_id: str, channel: str, offset: int) -> ReadMark:
        head = await self._read_head(channel, consistent=True)
        last_offset = 0 if head is None else head.offset
        target = min(offset, last_offset)
        if target <= 0:
            current = 0
            if last_offset > 0:
                current = (await self.read_positions(user_id, [channel]))[channel]
            return ReadMark(current, last_offset, moved=False)
        # A random marker tells this call's own earlier attempt (applied, answer lost) from a
        # position another call set.
        marker = uuid.uuid4().hex
        try:
            await self._call(
                "update_item",
                {
                    "TableName": self._tables[keys.GROUPS],
                    "Key": self._conversation_key(user_id, channel),
                    "UpdateExpression": "SET last_read = :o, read_by = :m",
                    "ConditionExpression": "attribute_not_exists(last_read) OR last_read < :o",
                    "ExpressionAttributeValues": {":o": n(target), ":m": s(marker)},
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                },
                expected=_CONDITION_FAILED_EXC,
            )
        except ClientError as exc:
            item = exc.response.get("Item") or {}
            current = get_n(item, "last_read") if "last_read" in item else 0
            if opt_s(item, "read_by") == marker:
                return ReadMark(max(current, target), last_offset, moved=True)
            return ReadMark(current, last_offset, moved=False)
        return ReadMark(target, last_offset, moved=True)

    async def read_positions(self, user_id: str, channels: list[str]) -> dict[str, int]:
        found = await self._get_many(
            [(keys.GROUPS, self._conversation_key(user_id, c)) for c in channels]
        )
        positions = dict.fromkeys(channels, 0)
        for _, item in found:
            if "last_read" in item:
                positions[get_s(item, "sk")] = get_n(item, "last_read")
        return positions

    async def list_conversations(
        self, user_id: str, *, limit: int, before: str | None
    ) -> list[Conversation]:
        if limit <= 0:
            return []
        condition = "pk = :pk"
        values: dict[str, Any] = {":pk": s(keys.conversation_pk(user_id))}
        if before is not None:
            condition += " AND joined < :before"
            values[":before"] = s(before)
        # Only listed entries carry `joined`, so the index holds the list and nothing else. It
        # projects keys only: ALL_ATTRIBUTES fetches `last_read` from the table, which keeps
        # read-position writes off the index.
        entries = await self._query_all(
            {
                "TableName": self._tables[keys.GROUPS],
                "IndexName": keys.GROUP_MEMBERS_BY_JOINED,
                "KeyConditionExpression": condition,
                "ExpressionAttributeValues": values,
                "ScanIndexForward": False,
                "Select": "ALL_ATTRIBUTES",
            },
            limit=limit,
            cached=False,
        )
        channels = [get_s(item, "sk") for item in entries]
        group_ids = {c: g for c in channels if (g := group_id(c)) is not None}
        found = await self._get_many(
            [(keys.CHANNELS, {"pk": s(c)}) for c in channels]
            + [(keys.GROUPS, {"pk": s(g), "sk": s(keys.GROUP_SK)}) for g in group_ids.values()]
        )
        heads: dict[str, _Head] = {}
        names: dict[str, str] = {}
        for table, item in found:
            if table == keys.CHANNELS:
                head = _head_from(item)
                if head is not None:
                    heads[get_s(item, "pk")] = head
            else:
                names[get_s(item, "pk")] = get_s(item, "name")
        conversations: list[Conversation] = []
        for item, channel in zip(entries, channels, strict=True):
            head = heads.get(channel)
            gid = group_ids.get(channel)
            conversations.append(
                Conversation(
                    channel=channel,
                    last_offset=0 if head is None else head.offset,
                    epoch="" if head is None else head.epoch,
                    last_ts=None if head is None else ids.timestamp_ms(head.last_id),
                    last_read=get_n(item, "last_read") if "last_read" in item else 0,
                    name=None if gid is None else names.get(gid),
                    cursor=get_s(item, "joined"),
                )
            )
        return conversations

    # -- accounts --------------------------------------------------------------------------

    async def create_user(self, username: str, password_hash: str) -> User:
        user = User(self._ids.new(self._now_ms()), username, password_hash, int(self._clock()))
        table = self._tables[keys.ACCOUNTS]
        record = {
            "id": s(user.id),
            "username": s(username),
            "password_hash": s(password_hash),
            "created_at": n(user.created_at),
        }
        # Both items hold the whole record (accounts never change), so a lookup by either key
        # is one read. The name item's condition makes the name unique.
        reasons = await self._transact(
            [
                {
                    "Put": {
                        "TableName": table,
                        "Item": {"pk": s(keys.username_pk(username)), **record},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Put": {
                        "TableName": table,
                        "Item": {"pk": s(keys.user_pk(user.id)), **record},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ],
            "create_user",
        )
        if reasons is not None:
            raise Conflict(f"username {username!r} is taken")
        return user

    async def get_user(self, user_id: str) -> User | None:
        return await self._user(keys.user_pk(user_id))

    async def get_user_by_username(self, username: str) -> User | None:
        return await self._user(keys.username_pk(username))

    async def _user(self, pk: str) -> User | None:
        response = await self._call(
            "get_item",
            {
                "TableName": self._tables[keys.ACCOUNTS],
                "Key": {"pk": s(pk)},
                "ConsistentRead": True,
            },
        )
        item = response.get("Item")
        if item is None:
            return None
        return User(
            get_s(item, "id"),
            get_s(item, "username"),
            get_s(item, "password_hash"),
            get_n(item, "created_at"),
        )

    # -- refresh tokens --------------------------------------------------------------------

    async def add_refresh_token(
        self, token_hash: str, user_id: str, family_id: str, expires_at: int
    ) -> None:
        marker = uuid.uuid4().hex
        try:
            await self._call(
                "put_item",
                {
                    "TableName": self._tables[keys.REFRESH_TOKENS],
                    "Item": {
                        "pk": s(keys.token_pk(token_hash)),
                        "user_id": s(user_id),
                        "family_id": s(family_id),
                        "expires_at": n(expires_at),
                        "used": boolean(False),
                        "put_by": s(marker),
                        keys.PURGE_ATTRIBUTE: n(expires_at + self._config.refresh_token_grace),
                    },
                    "ConditionExpression": "attribute_not_exists(pk)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                },
                expected=_CONDITION_FAILED_EXC,
            )
        except ClientError as exc:
            existing = exc.response.get("Item") or {}
            if opt_s(existing, "put_by") != marker:  # not this call's own attempt, retried
                raise Conflict("the refresh token already exists") from exc

    async def use_refresh_token(self, token_hash: str, now: int) -> RefreshUse:
        # One conditional write claims the token; its marker tells a retry of this very call
        # (whose first attempt was applied but not answered) from a real second use.
        marker = uuid.uuid4().hex
        try:
            response = await self._call(
                "update_item",
                {
                    "TableName": self._tables[keys.REFRESH_TOKENS],
                    "Key": {"pk": s(keys.token_pk(token_hash))},
                    "UpdateExpression": "SET used = :true, used_by = :marker",
                    "ConditionExpression": (
                        "attribute_exists(pk) AND used = :false AND expires_at > :now"
                    ),
                    "ExpressionAttributeValues": {
                        ":true": boolean(True),
                        ":false": boolean(False),
                        ":marker": s(marker),
                        ":now": n(now),
                    },
                    "ReturnValues": "ALL_OLD",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                },
                expected=_CONDITION_FAILED_EXC,
            )
            item: Item = response["Attributes"]
            claimed = True
        except ClientError as exc:
            item = exc.response.get("Item") or {}
            if not item:
                return RefreshUse(RefreshState.UNKNOWN)
            claimed = opt_s(item, "used_by") == marker
        user_id, family_id = get_s(item, "user_id"), get_s(item, "family_id")
        if claimed:
            if await self._family_revoked(family_id):
                return RefreshUse(RefreshState.REUSED, user_id, family_id)
            return RefreshUse(RefreshState.OK, user_id, family_id)
        if item.get("used", {}).get("BOOL") or await self._family_revoked(family_id):
            await self.revoke_family(family_id, now=now)
            return RefreshUse(RefreshState.REUSED, user_id, family_id)
        return RefreshUse(RefreshState.EXPIRED, user_id, family_id)

    async def _family_revoked(self, family_id: str) -> bool:
        response = await self._call(
            "get_item",
            {
                "TableName": self._tables[keys.REFRESH_TOKENS],
                "Key": {"pk": s(keys.family_pk(family_id))},
                "ConsistentRead": True,
            },
        )
        return "Item" in response

    async def revoke_family(self, family_id: str, *, now: int | None = None) -> None:
        revoked_at = int(self._clock()) if now is None else now
        await self._call(
            "update_item",
            {
                "TableName": self._tables[keys.REFRESH_TOKENS],
                "Key": {"pk": s(keys.family_pk(family_id))},
                # The first revocation's time stays, like SQLite's INSERT OR IGNORE.
                "UpdateExpression": (
                    "SET revoked_at = if_not_exists(revoked_at, :now), #purge = :purge"
                ),
                "ExpressionAttributeNames": {"#purge": keys.PURGE_ATTRIBUTE},
                "ExpressionAttributeValues": {
                    ":now": n(revoked_at),
                    ":purge": n(revoked_at + self._config.revoked_family_ttl),
                },
            },
        )

    # -- groups ----------------------------------------------------------------------------

    async def create_group(self, name: str, owner: str, members: list[str]) -> Group:
        everyone = list(dict.fromkeys([owner, *members]))
        now = self._now_ms()
        group = Group(self._ids.new(now), name, owner, now // 1000)
        channel = group_channel(group.id)
        pk = s(group.id)
        items: list[Item] = [
            {
                "pk": pk,
                "sk": s(keys.GROUP_SK),
                "name": s(name),
                "owner": s(owner),
                "created_at": n(group.created_at),
            },
            {"pk": pk, "sk": s(keys.COUNT_SK), "members": n(len(everyone))},
        ]
        items.extend(
            {
                "pk": pk,
                "sk": s(keys.member_sk(user)),
                "joined": s(keys.joined_key(group.created_at, user)),
                "joined_at": n(group.created_at),
            }
            for user in everyone
        )
        items.extend(
            {
                **self._conversation_key(user, channel),
                "last_read": n(0),
                "joined": s(list_key(now, channel)),
            }
            for user in everyone
        )
        # No transaction needed: the id is new and nobody knows it before this returns, so no
        # one can see the group half-written. Plain batch writes cost half a transaction's.
        chunks = [items[i : i + BATCH_WRITE_ITEMS] for i in range(0, len(items), BATCH_WRITE_ITEMS)]
        slots = asyncio.Semaphore(4)

        async def write(chunk: list[Item]) -> None:
            async with slots:
                await self._batch_write(self._tables[keys.GROUPS], chunk)

        await asyncio.gather(*(write(chunk) for chunk in chunks))
        return group

    async def _batch_write(self, table: str, items: list[Item]) -> None:
        request: dict[str, Any] = {table: [{"PutRequest": {"Item": item}} for item in items]}
        for attempt in range(self._policy.attempts):
            if attempt:
                await asyncio.sleep(self._policy.delay(attempt - 1))
            response = await self._call("batch_write_item", {"RequestItems": request})
            request = response.get("UnprocessedItems") or {}
            if not request:
                return
        raise Unavailable("DynamoDB batch_write_item kept leaving items unprocessed")

    async def get_group(self, group_id: str) -> Group | None:
        item = await self._group_item(group_id, keys.GROUP_SK)
        if item is None:
            return None
        return Group(group_id, get_s(item, "name"), get_s(item, "owner"), get_n(item, "created_at"))

    async def _group_item(self, group_id: str, sk: str) -> Item | None:
        # Strongly consistent: a member just removed must not keep writing to the group.
        response = await self._call(
            "get_item",
            {
                "TableName": self._tables[keys.GROUPS],
                "Key": {"pk": s(group_id), "sk": s(sk)},
                "ConsistentRead": True,
            },
        )
        item: Item | None = response.get("Item")
        return item

    async def list_members(self, group_id: str, *, limit: int) -> list[str]:
        members: list[str] = []
        arguments: dict[str, Any] = {
            "TableName": self._tables[keys.GROUPS],
            "IndexName": keys.GROUP_MEMBERS_BY_JOINED,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": s(group_id)},
            "ConsistentRead": True,
        }
        while len(members) < limit:
            arguments["Limit"] = limit - len(members)
            response = await self._call("query", arguments)
            members.extend(get_s(item, "sk")[2:] for item in response.get("Items", []))
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                break
            arguments["ExclusiveStartKey"] = last_key
        return members

    async def count_members(self, group_id: str) -> int:
        item = await self._group_item(group_id, keys.COUNT_SK)
        return 0 if item is None else get_n(item, "members")

    async def is_member(self, group_id: str, user_id: str) -> bool:
        return await self._group_item(group_id, keys.member_sk(user_id)) is not None

    async def add_member(self, group_id: str, user_id: str) -> bool:
        now = self._now_ms()
        joined_at = now // 1000
        table = self._tables[keys.GROUPS]
        channel = group_channel(group_id)
        # A new member starts with what is already in the channel read.
        head = await self._read_head(channel, consistent=True)
        start = 0 if head is None else head.offset
        member: Item = {
            "Put": {
                "TableName": table,
                "Item": {
                    "pk": s(group_id),
                    "sk": s(keys.member_sk(user_id)),
                    "joined": s(keys.joined_key(joined_at, user_id)),
                    "joined_at": n(joined_at),
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        entry: Item = {
            "Update": {
                "TableName": table,
                "Key": self._conversation_key(user_id, channel),
                "UpdateExpression": "SET joined = :j, last_read = :r",
                # The read position only grows: a higher one (kept from an earlier membership)
                # stays, and the entry is then listed without touching it (second round).
                "ConditionExpression": "attribute_not_exists(last_read) OR last_read <= :r",
                "ExpressionAttributeValues": {":j": s(list_key(now, channel)), ":r": n(start)},
            }
        }
        for _ in range(2):
            reasons = await self._transact(
                [member, self._count_update(table, group_id, 1), entry], "add_member"
            )
            if reasons is None:
                return True
            if reasons[0].get("Code") == _CONDITION_FAILED:
                return False  # already a member
            entry = {
                "Update": {
                    "TableName": table,
                    "Key": self._conversation_key(user_id, channel),
                    "UpdateExpression": "SET joined = :j",
                    "ExpressionAttributeValues": {":j": s(list_key(now, channel))},
                }
            }
        raise StorageError(f"add_member {user_id} to {group_id}: the list entry kept conflicting")

    async def remove_member(self, group_id: str, user_id: str) -> bool:
        table = self._tables[keys.GROUPS]
        reasons = await self._transact(
            [
                {
                    "Delete": {
                        "TableName": table,
                        "Key": {"pk": s(group_id), "sk": s(keys.member_sk(user_id))},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
                self._count_update(table, group_id, -1),
                {
                    # Off the list; the read position stays, for a member who comes back.
                    "Update": {
                        "TableName": table,
                        "Key": self._conversation_key(user_id, group_channel(group_id)),
                        "UpdateExpression": "SET last_read = if_not_exists(last_read, :z)"
                        " REMOVE joined",
                        "ExpressionAttributeValues": {":z": n(0)},
                    }
                },
            ],
            "remove_member",
        )
        return reasons is None

    @staticmethod
    def _count_update(table: str, group_id: str, delta: int) -> Item:
        return {
            "Update": {
                "TableName": table,
                "Key": {"pk": s(group_id), "sk": s(keys.COUNT_SK)},
                "UpdateExpression": "ADD members :delta",
                "ExpressionAttributeValues": {":delta": n(delta)},
            }
        }


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


def _head_from(item: Item | None) -> _Head | None:
    if not item or "last_offset" not in item:
        return None
    return _Head(get_n(item, "last_offset"), get_s(item, "last_id"), get_s(item, "epoch"))


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
