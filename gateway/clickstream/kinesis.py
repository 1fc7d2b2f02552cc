"""Kinesis Data Streams through aioboto3 ``PutRecords``, retrying only the records that failed.

A write is cut into calls of at most :data:`MAX_RECORDS` records and :data:`MAX_CALL_BYTES`
(data plus partition keys, as Kinesis counts them); the partition key is the user id, so one
user's events stay in order on one shard. ``PutRecords`` is not all-or-nothing: its answer says
which entries failed (``ProvisionedThroughputExceededException``, ``InternalFailure``), and only
those are sent again, after a capped exponential backoff with full jitter (:class:`storage.dynamodb.retry.RetryPolicy`, (``MOOSIC_CLICKSTREAM_RETRY_BACKOFF``
doubled each time, at most :data:`MAX_BACKOFF`)). A call that fails as a whole (throttled,
refused, the connection lost, timed out) is retried the same way with all its records. After
``MOOSIC_CLICKSTREAM_RETRIES`` retries what still fails goes to the dead-letter files
(``dead-letter-*.jsonl`` in ``MOOSIC_CLICKSTREAM_DIR``: the record, its last error and the
attempts made), so a write never loses a record and never raises for a failing stream.

Delivery is exactly once for records whose entry the stream answered; a call that timed out
may have been applied, so its retry can repeat records (at least once): ``(user_id,
event_id)`` identifies an event downstream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec

from gateway.aws import AwsSink
from gateway.clickstream.files import FileSink
from gateway.metrics import Metrics
from handlers.events import Record
from storage.dynamodb.retry import RetryPolicy

log = logging.getLogger(__name__)

MAX_RECORDS = 500
MAX_CALL_BYTES = 5 * 1024 * 1024
MAX_BACKOFF = 5.0
CALL_FAILED = "CallFailed"
"""The error code given to records whose whole call failed."""


class DeadLetter(msgspec.Struct):
    partition_key: str
    error_code: str
    error_message: str
    attempts: int
    failed_at: int
    """Milliseconds since the epoch."""
    record: msgspec.Raw
    """The enriched event, as it would have gone to the stream."""


def chunks(records: Sequence[Record]) -> Iterator[list[Record]]:
    """Cut records into ``PutRecords`` calls: at most 500 records and 5 MiB each."""
    chunk: list[Record] = []
    size = 0
    for record in records:
        weight = len(record.data) + len(record.partition_key.encode())
        if chunk and (len(chunk) >= MAX_RECORDS or size + weight > MAX_CALL_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(record)
        size += weight
    if chunk:
        yield chunk


class KinesisSink(AwsSink):
    """Records into one Kinesis stream (see the module docstring)."""

    def __init__(
        self,
        stream: str,
        *,
        region: str,
        endpoint_url: str | None,
        retries: int,
        retry_backoff: float,
        dead_letter: FileSink,
        metrics: Metrics,
        session: Any = None,
    ) -> None:
        super().__init__(
            "kinesis",
            region=region,
            endpoint_url=endpoint_url,
            session=session,
            connect_timeout=5,
            read_timeout=15,
        )
        self.stream = stream
        self.retries = retries
        self.retry_backoff = retry_backoff
        self._policy = RetryPolicy(retries + 1, retry_backoff, MAX_BACKOFF)
        """The same capped, jittered backoff as the DynamoDB store's retries."""
        self.dead_letter = dead_letter
        self._metrics = metrics

    async def open(self) -> None:
        await super().open()
        await self.dead_letter.open()

    async def close(self) -> None:
        await super().close()
        await self.dead_letter.close()

    async def write(self, records: Sequence[Record]) -> None:
        for chunk in chunks(records):
            await self._put(chunk)

    async def _call(self, pending: list[Record]) -> list[tuple[Record, str, str]]:
        """One ``PutRecords``; return the records that failed with their error."""
        from botocore.exceptions import BotoCoreError, ClientError

        entries = [{"Data": r.data, "PartitionKey": r.partition_key} for r in pending]
        try:
            answer = await self._client.put_records(StreamName=self.stream, Records=entries)
        except (BotoCoreError, ClientError, OSError, TimeoutError) as exc:
            return [(record, CALL_FAILED, f"{type(exc).__name__}: {exc}") for record in pending]
        results = answer.get("Records", [])
        if len(results) != len(pending):
            message = f"{len(results)} results for {len(pending)} records"
            return [(record, CALL_FAILED, message) for record in pending]
        return [
            (record, str(result["ErrorCode"]), str(result.get("ErrorMessage", "")))
            for record, result in zip(pending, results, strict=True)
            if result.get("ErrorCode")
        ]

    async def _put(self, chunk: list[Record]) -> None:
        pending = chunk
        attempt = 0
        while True:
            attempt += 1
            failed = await self._call(pending)
            self._metrics.clickstream_events_written += len(pending) - len(failed)
            if not failed:
                return
            if attempt > self.retries:
                await self._dead_letter(failed, attempt)
                return
            self._metrics.clickstream_records_retried += len(failed)
            await asyncio.sleep(self._policy.delay(attempt - 1))
            pending = [record for record, _code, _message in failed]

    async def _dead_letter(self, failed: list[tuple[Record, str, str]], attempts: int) -> None:
        now = int(time.time() * 1000)
        lines = [
            msgspec.json.encode(
                DeadLetter(
                    record.partition_key,
                    code,
                    message,
                    attempts,
                    now,
                    msgspec.Raw(record.data.rstrip(b"\n")),
                )
            )
            + b"\n"
            for record, code, message in failed
        ]
        log.error(
            "clickstream: %d records still failed after %d attempts (%s); dead-lettered",
            len(failed),
            attempts,
            failed[0][1],
        )
        # Raising here (the disk failed too) keeps the whole write buffered for another round
        # (its records that did reach the stream go again then: at least once).
        await self.dead_letter.write_lines(lines)
        self._metrics.clickstream_records_dead_lettered += len(failed)
