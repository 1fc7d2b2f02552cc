"""What an observation costs on the hot path: ``Histogram.observe`` vs a plain integer add.

    PYTHONPATH=$PWD .venv/bin/python loadtest/metrics_bench.py

Prints nanoseconds per call (best of several ``timeit`` repeats) for: a plain attribute add
(``metrics.deliveries += 1``, what the hot path does today), ``Histogram.observe`` with a
held child, the same through a labelled family's lookup, ``time.time()``, the hub's whole lag
observation (once per event per node), framing one event (also once per event per node, for
scale), and prometheus-client's ``Counter.inc()`` and
``Histogram.observe()`` for comparison. Figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import time
import timeit

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as ClientCounter
from prometheus_client import Histogram as ClientHistogram

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


if __name__ == "__main__":
    main()
