"""Eventually consistent reads through DAX, off the event loop, with a way back to DynamoDB.

``amazon-dax-client`` is synchronous, so each DAX read runs on a small thread pool. The pool is
bounded twice: at most ``max_workers`` threads, and a read that finds every thread busy does not
queue behind them (a stuck DAX node would otherwise stall every history page) but goes straight
to DynamoDB. A DAX read that takes longer than ``timeout`` or fails is also answered by
DynamoDB; the thread finishes in the background and is then free again. DAX is a cache in
front of the same tables, so the fallback gives the same answer, only slower and costlier.

What goes through DAX is decided by the store, not here: only reads whose answer cannot change
once it exists (a message by id, a history range below a known message). See
``docs/storage.md`` for why the channel head, memberships, accounts and tokens never do.

No DAX runs locally; tests hand :class:`CachedReads` a recording double of :class:`DaxClient`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

log = logging.getLogger(__name__)

READ_OPERATIONS = frozenset({"get_item", "query", "batch_get_item"})
WARN_INTERVAL = 10.0
"""Seconds between two warnings about DAX failures."""


class DaxClient(Protocol):
    """The synchronous part of ``amazondax.AmazonDaxClient`` the store uses."""

    def get_item(self, **kwargs: Any) -> dict[str, Any]: ...

    def query(self, **kwargs: Any) -> dict[str, Any]: ...

    def batch_get_item(self, **kwargs: Any) -> dict[str, Any]: ...

    def close(self) -> None: ...


Fallback = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
"""Run a read operation on DynamoDB: ``(operation, arguments) -> response``."""


def connect_dax(
    endpoint: str, region: str, connect_timeout: float, read_timeout: float
) -> DaxClient:
    """Build the real DAX client (blocking: it discovers the cluster's nodes)."""
    from amazondax import AmazonDaxClient
    from botocore.config import Config

    config = Config(connect_timeout=connect_timeout, read_timeout=read_timeout, region_name=region)
    client: DaxClient = AmazonDaxClient(endpoint_url=endpoint, region_name=region, config=config)
    return client


class CachedReads:
    """Route eventually consistent reads of immutable items through DAX."""

    def __init__(
        self, client: DaxClient, *, max_workers: int, timeout: float, fallback: Fallback
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._fallback = fallback
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="dax")
        self._threads = threading.BoundedSemaphore(max_workers)
        self.reads = 0
        """DAX reads started."""
        self.fallbacks = 0
        """Reads answered by DynamoDB instead (DAX busy, slow or failing)."""
        self._warned_at = -WARN_INTERVAL

    async def call(self, operation: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Run a read on DAX, or on DynamoDB when DAX cannot answer in time."""
        if operation not in READ_OPERATIONS:
            raise ValueError(f"{operation} does not go through DAX")
        if not self._threads.acquire(blocking=False):
            self.fallbacks += 1
            return await self._fallback(operation, arguments)
        self.reads += 1
        # Bound now: the caller may change its (top-level) arguments once this read times out.
        call = functools.partial(getattr(self._client, operation), **arguments)

        def run() -> dict[str, Any]:
            try:
                result: dict[str, Any] = call()
                return result
            finally:
                self._threads.release()

        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, run)
        except RuntimeError:
            self._threads.release()  # the executor is shut down: run() never started
            raise
        try:
            async with asyncio.timeout(self._timeout):
                return await future
        # The DAX client raises its own and botocore's error types; any failure of the cache
        # is answered by the table, which raises the real error if the request itself is bad.
        except Exception as exc:  # noqa: BLE001 - every DAX failure falls back to DynamoDB
            self.fallbacks += 1
            now = time.monotonic()
            if now - self._warned_at >= WARN_INTERVAL:  # a sick DAX fails every read: log a few
                self._warned_at = now
                log.warning(
                    "DAX %s failed (%s); reading from DynamoDB (%d fallbacks so far)",
                    operation,
                    type(exc).__name__,
                    self.fallbacks,
                )
            return await self._fallback(operation, arguments)

    def close(self) -> None:
        """Stop the threads (a stuck DAX call is not waited for) and close the client."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._client.close()
