"""Counters snapshotted at the edges of a measurement window, and what they add up to."""

import time
from array import array
from dataclasses import dataclass
from typing import Any

from .client import Sink
from .procs import own_cpu_s
from .targets import Cluster

CLIENT_BOUND_PCT = 90.0
"""Above this share of its core the load generator may be what limits a figure."""


@dataclass(frozen=True)
class Snap:
    """Counters at one instant."""

    at: float
    server_cpu_s: float
    redis_cpu_s: float
    client_cpu_s: float
    delivered: int
    acks: int
    errors: int


def snap(cluster: Cluster, sink: Sink) -> Snap:
    """Read every counter now."""
    return Snap(
        time.monotonic(),
        cluster.server_cpu_s(),
        cluster.redis_cpu_s(),
        own_cpu_s(),
        sink.delivered,
        sink.acks,
        sink.errors,
    )


def percentile_ms(sorted_us: list[int], q: float) -> float | None:
    """Nearest-rank percentile of sorted microsecond samples, in milliseconds."""
    if not sorted_us:
        return None
    rank = min(len(sorted_us) - 1, max(0, round(q * len(sorted_us)) - 1))
    return sorted_us[rank] / 1000


def window(start: Snap, end: Snap, latencies_us: "array[int]") -> dict[str, Any]:
    """Rates, CPU and latency percentiles over the window between two snapshots."""
    seconds = end.at - start.at
    deliveries = end.delivered - start.delivered
    server_cpu = end.server_cpu_s - start.server_cpu_s
    client_pct = 100 * (end.client_cpu_s - start.client_cpu_s) / seconds
    ordered = sorted(latencies_us)
    return {
        "seconds": round(seconds, 3),
        "deliveries": deliveries,
        "deliveries_per_s": deliveries / seconds,
        "server_cpu_pct": 100 * server_cpu / seconds,
        "server_cpu_us_per_delivery": 1e6 * server_cpu / deliveries if deliveries else None,
        "redis_cpu_pct": 100 * (end.redis_cpu_s - start.redis_cpu_s) / seconds,
        "client_cpu_pct": client_pct,
        "client_bound": client_pct >= CLIENT_BOUND_PCT,
        "acks": end.acks - start.acks,
        "errors": end.errors - start.errors,
        "latency_samples": len(ordered),
        "p50_ms": percentile_ms(ordered, 0.50),
        "p99_ms": percentile_ms(ordered, 0.99),
        "max_ms": ordered[-1] / 1000 if ordered else None,
    }
