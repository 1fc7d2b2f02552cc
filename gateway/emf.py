"""CloudWatch Embedded Metric Format: the node's metrics as one JSON line every interval.

With ``MOOSIC_EMF_INTERVAL`` above 0, every that many seconds the node writes one line to
stdout in CloudWatch's Embedded Metric Format: the CloudWatch agent (or a Lambda-style log
pipeline) that ships the node's output to CloudWatch Logs turns it into metrics, no agent-side
scraping needed. Off by default (0): a terminal or a Prometheus scrape does not want it.

One line::

    {"_aws": {"Timestamp": 1764240000123, "CloudWatchMetrics": [{"Namespace": "Moosic/Gateway",
      "Dimensions": [["Region", "Node"]], "Metrics": [{"Name": "deliveries", "Unit": "Count"},
      ...]}]}, "Region": "ap-southeast-1", "Node": "ip-10-0-1-5:8080", "deliveries": 5120,
      "ws_connections": 20012, ...}

Counters (``moosic_*_total`` at ``/metrics``) are sent as what they grew by since the previous
line, gauges as they are now, under the names ``/metrics`` uses without ``moosic_`` and
``_total``. Bounded: at most :data:`MAX_METRICS` metrics a line (EMF's own limit per
directive), gauges first, then counters in name order; the rest are left out of EMF (they stay
in ``/metrics``). stdout, not the log: the log lines may be JSON of their own
(``MOOSIC_LOG_FORMAT=json``) and EMF must be a line by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

import orjson

from gateway.metrics import Metrics

log = logging.getLogger(__name__)

NAMESPACE = "Moosic/Gateway"
MAX_METRICS = 100
"""Metrics one EMF directive may carry."""


class EmfWriter:
    """Write the node's metrics as EMF lines, one every ``interval`` seconds."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        interval: float,
        node: str,
        region: str,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._metrics = metrics
        self._interval = interval
        self._node = node
        self._region = region
        self._out = out
        self._clock = clock
        self._last: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    def line(self) -> bytes:
        """The next EMF line (counters as growth since the previous line)."""
        gauges = dict(sorted(self._metrics.gauge_values().items()))
        totals = dict(sorted(self._metrics.counter_values().items()))
        values: dict[str, float] = {}
        for name, value in gauges.items():
            values[name] = value
        for name, value in totals.items():
            values[name] = value - self._last.get(name, 0.0)
        self._last = totals
        kept = dict(list(values.items())[:MAX_METRICS])
        doc: dict[str, object] = {
            "_aws": {
                "Timestamp": int(self._clock() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": NAMESPACE,
                        "Dimensions": [["Region", "Node"]],
                        "Metrics": [{"Name": name, "Unit": "Count"} for name in kept],
                    }
                ],
            },
            "Region": self._region,
            "Node": self._node,
            **kept,
        }
        return orjson.dumps(doc)

    def write(self) -> None:
        out = self._out or sys.stdout
        out.write(self.line().decode() + "\n")
        out.flush()
        self.written += 1

    async def start(self) -> None:
        self.line()  # the baseline: the first line written carries one interval's growth
        self._task = asyncio.create_task(self._run(), name="emf")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                self.write()
            except (OSError, ValueError) as exc:  # stdout closed or full: not worth dying for
                log.warning("EMF: cannot write (%s)", exc)
