"""The typed base of every DynamoDB aggregate: the client, the tables, retries, DAX reads.

:class:`DynamoDBBase` owns what the aggregates share and declares what they may use:

- ``_config``, ``_tables`` (table names by :mod:`keys` name), ``_layout``, ``_clock``, ``_ids``
  and ``_policy`` (the retry policy);
- ``_call(operation, arguments)``: one DynamoDB call with retries (:mod:`storage.dynamodb.retry`);
- ``_read``: an eventually consistent read of immutable items, through DAX when there is one;
- ``_transact``: one write transaction, run again when cancelled only by conflicts;
- ``_batch_write``, ``_get_many`` and ``_query_all``: the batch and paging loops;
- ``_read_head``: a channel's head (last offset, last id, epoch), which messages, groups and
  conversations all read.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from storage import ids
from storage.base import StoreHealth
from storage.dynamodb import keys
from storage.dynamodb.config import DynamoDBConfig
from storage.dynamodb.dax import CachedReads, DaxClient, connect_dax
from storage.dynamodb.keys import Item, Layout, get_n, get_s, opt_s, s
from storage.dynamodb.retry import (
    CANCELLATION_RETRYABLE,
    RetryPolicy,
    error_code,
    rejected,
    with_retries,
)
from storage.dynamodb.schema import table_name
from storage.errors import Unavailable

MAX_TRANSACT_ACTIONS = 100
"""Actions per ``TransactWriteItems`` call (DynamoDB's limit)."""
BATCH_GET_KEYS = 100
"""Keys per ``BatchGetItem`` call (DynamoDB's limit)."""
BATCH_WRITE_ITEMS = 25
"""Items per ``BatchWriteItem`` call (DynamoDB's limit)."""

CONDITION_FAILED = "ConditionalCheckFailed"
CONDITION_FAILED_EXC = frozenset({"ConditionalCheckFailedException"})
CANCELLED_EXC = frozenset({"TransactionCanceledException"})


@dataclass(frozen=True, slots=True)
class Head:
    """A channel's last offset, last message id and epoch, as one node last saw them."""

    offset: int
    last_id: str
    epoch: str


def head_from(item: Item | None) -> Head | None:
    if not item or "last_offset" not in item:
        return None
    return Head(get_n(item, "last_offset"), get_s(item, "last_id"), get_s(item, "epoch"))


class DynamoDBBase:
    """DynamoDB tables named ``{table_prefix}{table}``, one client, optional DAX; the base of the
    aggregates."""

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
            checks = [asyncio.ensure_future(self._check_table(t)) for t in self._tables.values()]
            try:
                await asyncio.gather(*checks)
            finally:
                # The first failure ends the wait, not the other checks: they are stopped before
                # the client closes, or one retrying after it would open a session nobody closes.
                for check in checks:
                    check.cancel()
                await asyncio.gather(*checks, return_exceptions=True)
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
        """Release DAX and the HTTP client."""
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
                    expected=CANCELLED_EXC,
                )
            except ClientError as exc:
                reasons: list[dict[str, Any]] = exc.response.get("CancellationReasons") or []
                codes = {r.get("Code") for r in reasons}
                if CONDITION_FAILED in codes:
                    return reasons
                if not codes & CANCELLATION_RETRYABLE:
                    raise rejected(what, exc) from exc
                last = exc
            else:
                return None
        raise Unavailable(f"DynamoDB {what}: transaction kept conflicting") from last

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- what several aggregates use ------------------------------------------------------

    async def _read_head(self, channel: str, *, consistent: bool) -> Head | None:
        response = await self._call(
            "get_item",
            {
                "TableName": self._tables[keys.CHANNELS],
                "Key": {"pk": s(channel)},
                "ConsistentRead": consistent,
            },
        )
        return head_from(response.get("Item"))

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
