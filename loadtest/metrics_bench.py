"""What an observation costs on the hot path: ``Histogram.observe`` vs a plain integer add.

    PYTHONPATH=$PWD .venv/bin/python loadtest/metrics_bench.py

Prints nanoseconds per call (best of several ``timeit`` repeats) for: a plain attribute add
(``metrics.deliveries += 1``, what the hot path does today), ``Histogram.observe`` with a
held child, the same through a labelled family's lookup, ``time.time()``, the hub's whole lag
observation (once per event per node), framing one event (also once per event per node, for
scale), and prometheus-client's ``Counter.inc()`` and
``Histogram.observe()`` for comparison. Then the hub itself: one stored event handed to 1, 10
and 100 subscribers that only count (so the hub's own cost shows), with and without a store
time (without one, nothing is observed). Figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import time
import timeit

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as ClientCounter
from prometheus_client import Histogram as ClientHistogram

from gateway.fanout.broker_memory import MemoryBroker
from gateway.fanout.hub import Hub
from gateway.metrics import LAG_BUCKETS, Metrics
from gateway.ws.frames import text_frame

NUMBER = 1_000_000
REPEAT = 7


def best_ns(statement: str, scope: dict[str, object]) -> float:
    times = timeit.repeat(statement, globals=scope, number=NUMBER, repeat=REPEAT)
    return min(times) / NUMBER * 1e9


def main() -> None:
    metrics = Metrics()
    lag = metrics.histogram("delivery_lag")
    ops = metrics.family("op_latency")
    ops.labels("publish")
    registry = CollectorRegistry()
    counter = ClientCounter("bench_total", "bench", registry=registry)
    client_histogram = ClientHistogram(
        "bench_seconds", "bench", buckets=LAG_BUCKETS, registry=registry
    )
    scope: dict[str, object] = {
        "metrics": metrics,
        "lag": lag,
        "ops": ops,
        "counter": counter,
        "client_histogram": client_histogram,
        "time": __import__("time"),
        "text_frame": text_frame,
        "payload": b'{"op":"event","channel":"room:x","data":{"text":"' + b"x" * 160 + b'"}}',
        "stored_at": int(time.time() * 1000),
    }
    rows = [
        ("plain int add (metrics.deliveries += 1)", "metrics.deliveries += 1"),
        ("Histogram.observe (held child)", "lag.observe(0.0042)"),
        ("HistogramFamily.observe (label lookup)", "ops.observe(0.0042, 'publish')"),
        ("time.time()", "time.time()"),
        (
            "the hub's lag observation (clock, clamp, observe)",
            "d = time.time() - stored_at * 0.001; lag.observe(d if d > 0.0 else 0.0)",
        ),
        ("for scale: text_frame(200 B event), once per event", "text_frame(payload)"),
        ("prometheus_client Counter.inc()", "counter.inc()"),
        ("prometheus_client Histogram.observe()", "client_histogram.observe(0.0042)"),
    ]
    base = best_ns(rows[0][1], scope)
    for label, statement in rows:
        ns = best_ns(statement, scope)
        print(f"{label:52s} {ns:7.1f} ns  {ns / base:5.1f}x")


class _Counting:
    __slots__ = ("frames",)

    def __init__(self) -> None:
        self.frames = 0

    def deliver(self, frame: bytes) -> None:
        self.frames += 1


async def hub_ns(subscribers: int, stamped: bool, events: int = 200_000) -> float:
    """ns per stored event through the hub's delivery to ``subscribers`` counting sinks."""
    hub = Hub(MemoryBroker(), Metrics(), max_watchers=10, heartbeat=3600.0)
    await hub.start()
    for _ in range(subscribers):
        await hub.subscribe("room:a", _Counting())
    payload = b'{"op":"event","channel":"room:a","data":{"text":"' + b"x" * 150 + b'"}}'
    stored_at = int(time.time() * 1000) if stamped else 0
    deliver = hub._on_broker_message  # noqa: SLF001 (the callback a broker calls)
    started = time.perf_counter()
    for offset in range(1, events + 1):
        deliver("room:a", offset, "e1", payload, stored_at)
    elapsed = time.perf_counter() - started
    await hub.close()
    return elapsed / events * 1e9


async def hub_rows() -> None:
    for subscribers in (1, 10, 100):
        runs: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(REPEAT):
            for stamped in (False, True):
                runs[stamped].append(await hub_ns(subscribers, stamped))
        plain, observed = min(runs[False]), min(runs[True])
        print(
            f"hub, {subscribers:3d} subscribers: {plain:7.0f} ns/event unobserved, "
            f"{observed:7.0f} ns observed ({observed - plain:+.0f} ns)"
        )


if __name__ == "__main__":
    main()
    asyncio.run(hub_rows())
