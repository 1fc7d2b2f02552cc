"""The bounded per-node buffer of accepted events, and its one writer task.

Policy when full: the buffer holds at most ``limit`` events, counting those being written. An
offer takes what fits and refuses the rest at once (the intake answers ``server_busy``,
retryable; ``clickstream_events_refused_full`` in ``/metrics``); nothing waits, nothing grows.

Flushes: when ``flush_events`` events are buffered, every ``interval`` seconds otherwise, and on
:meth:`EventBuffer.close` until the buffer is empty. A write that fails puts its events back in
front (the next round retries them, in order), so an event the intake acknowledged leaves the
buffer only when its sink has it (the Kinesis sink answers only once each record is in the
stream or in its dead-letter file).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from gateway.metrics import Metrics
from handlers.events import Record

log = logging.getLogger(__name__)


class Sink(Protocol):
    async def open(self) -> None: ...

    async def write(self, records: Sequence[Record]) -> None:
        """Deliver the records, or raise (the buffer keeps them and retries)."""
        ...

    async def close(self) -> None: ...


class EventBuffer:
    """Bounded FIFO of records between the intake and a sink (see the module docstring)."""

    def __init__(
        self,
        sink: Sink,
        metrics: Metrics,
        *,
        limit: int,
        flush_events: int,
        interval: float,
    ) -> None:
        self.sink = sink
        self.limit = limit
        self.flush_events = flush_events
        self.interval = interval
        self._metrics = metrics
        self._queue: deque[Record] = deque()
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def buffered(self) -> int:
        """Events held now, those being written included."""
        return len(self._queue) + self._in_flight

    def offer(self, records: Sequence[Record]) -> int:
        """Take the first records that fit; return how many (the rest are refused)."""
        free = max(0, self.limit - self.buffered)
        if self._stopping:
            free = 0  # closing: what comes now is refused, so the last flush can end
        taken = min(free, len(records))
        self._queue.extend(records[:taken])
        self._metrics.clickstream_events_accepted += taken
        self._metrics.clickstream_events_refused_full += len(records) - taken
        if len(self._queue) >= self.flush_events:
            self._wake.set()
        return taken

    async def start(self) -> None:
        await self.sink.open()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="clickstream-flush")

    async def close(self) -> None:
        """Refuse new events, write every buffered one, close the sink."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        while self._queue:
            if not await self.flush():
                log.error("clickstream: %d buffered events could not be written", self.buffered)
                break
        await self.sink.close()

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            while self._queue:
                if not await self.flush():
                    break  # the sink fails: try again next interval
                if self._stopping or len(self._queue) < self.flush_events:
                    break  # a short remainder waits for the interval (or the last flush)

    async def flush(self) -> bool:
        """Write up to ``flush_events`` records; False when the sink failed (they are kept)."""
        count = min(self.flush_events, len(self._queue))
        if count == 0:
            return True
        batch = [self._queue.popleft() for _ in range(count)]
        self._in_flight = count
        try:
            await self.sink.write(batch)
        except Exception:  # any sink failure: keep the events, in order, for the next round
            log.exception("clickstream: writing %d events failed; keeping them", count)
            self._metrics.clickstream_flush_failures += 1
            self._queue.extendleft(reversed(batch))
            return False
        finally:
            self._in_flight = 0
        return True
