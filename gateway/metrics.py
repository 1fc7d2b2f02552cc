"""Process counters, gauges and latency histograms, served at ``GET /metrics``.

The hot path only ever adds to plain integers: a counter is an attribute of :class:`Metrics`
(``metrics.deliveries += n``), a histogram observation is one ``bisect`` and two additions on
a :class:`Histogram` (no lock, no label lookup: callers hold the child they observe into,
resolved once at start-up). Nothing is formatted until a scrape: :class:`MetricsCollector`
reads everything then and hands it to ``prometheus-client``, which also adds its process,
platform and GC collectors and answers OpenMetrics when the scrape asks for it (:func:`exposition`).

``prometheus-client``'s own ``Counter.inc()`` costs about 8x a plain integer add (a lock and a
``ValueClass`` per child), so it is used for the exposition only, never on the hot path.

Label sets are bounded: a :class:`HistogramFamily` has at most ``max_children`` label sets,
and a new one past that is observed into the ``other`` child (all its labels ``other``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

OTHER = "other"
"""The label value a family past its bound observes into."""

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Publish-to-deliver lag; 0.25 is the delivery SLO's line (docs/operations.md)."""
FAST_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
"""Store calls, ops and Redis round trips: 100 µs to 5 s."""
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0)
"""Long-poll waits (at most ``MOOSIC_LONGPOLL_MAX_SECONDS``)."""
FANOUT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Feed fan-out walks, from one batch to a million followers."""
TRANSCODE_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
"""Transcodes, up to ``MOOSIC_MEDIA_TRANSCODE_TIMEOUT``."""


class Histogram:
    """Counts of observations per bucket (not cumulative) and their sum; no lock, no labels.

    ``observe`` is a bisect and two additions; the event loop is the only writer, a scrape
    the only reader (on the same loop).
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(bounds)
        if list(self.bounds) != sorted(set(self.bounds)) or not self.bounds:
            raise ValueError("histogram bounds must be increasing and not empty")
        self.counts = [0] * (len(self.bounds) + 1)
        """``counts[i]``: observations <= ``bounds[i]`` and > ``bounds[i-1]``; last: above all."""
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus buckets: (``le``, observations at or below it), ``+Inf`` last."""
        total = 0
        out: list[tuple[str, float]] = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return out


class HistogramFamily:
    """One histogram per label set, at most ``max_children`` of them (then ``other``)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        bounds: Iterable[float],
        labels: tuple[str, ...] = (),
        *,
        max_children: int = 64,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = tuple(bounds)
        self.label_names = labels
        self._max = max_children
        self._children: dict[tuple[str, ...], Histogram] = {}
        if not labels:
            self._children[()] = Histogram(self.bounds)

    def labels(self, *values: str) -> Histogram:
        """The child of ``values`` (made on first use; ``other`` past the bound)."""
        if len(values) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {values}")
        child = self._children.get(values)
        if child is None:
            if len(self._children) >= self._max:
                values = (OTHER,) * len(self.label_names)
                child = self._children.get(values)
            if child is None:
                child = self._children[values] = Histogram(self.bounds)
        return child

    def observe(self, seconds: float, *values: str) -> None:
        """Observe into the child of ``values`` (a dict lookup: prefer a held child when hot)."""
        child = self._children.get(values)
        if child is None:
            child = self.labels(*values)
        child.observe(seconds)

    def children(self) -> Iterator[tuple[tuple[str, ...], Histogram]]:
        return iter(sorted(self._children.items()))


def _histograms() -> dict[str, HistogramFamily]:
    families = [
        HistogramFamily(
            "moosic_delivery_lag_seconds",
            "From the event's store time to this node writing it to its sockets",
            LAG_BUCKETS,
        ),
        HistogramFamily(
            "moosic_store_latency_seconds",
            "Store calls by backend and operation (Store method), failures included",
            FAST_BUCKETS,
            ("backend", "operation"),
            max_children=128,
        ),
        HistogramFamily(
            "moosic_op_latency_seconds",
            "Ops from the call to the result or error (WebSocket and REST alike)",
            FAST_BUCKETS,
            ("op",),
            max_children=128,
        ),
        HistogramFamily(
            "moosic_redis_latency_seconds",
            "Redis round trips: waited commands and scripts, and pipelined publishes",
            FAST_BUCKETS,
            ("kind",),
            max_children=8,
        ),
        HistogramFamily(
            "moosic_longpoll_wait_seconds",
            "How long a long poll (the events op) waited, by what ended the wait",
            WAIT_BUCKETS,
            ("outcome",),
            max_children=4,
        ),
        HistogramFamily(
            "moosic_feed_fanout_seconds",
            "Feed fan-out walks, from the post to its last batch",
            FANOUT_BUCKETS,
            ("author",),
            max_children=4,
        ),
        HistogramFamily(
            "moosic_transcode_seconds",
            "Media transcodes, by backend and outcome",
            TRANSCODE_BUCKETS,
            ("backend", "outcome"),
            max_children=8,
        ),
    ]
    return {family.name: family for family in families}


@dataclass(slots=True)
class Metrics:
    """Counters bumped on the hot path: plain integer attributes, no locks, no labels."""

    ws_connections_opened: int = 0
    ws_frames_received: int = 0
    ws_errors_sent: int = 0
    ws_slow_consumer_closes: int = 0
    ws_frame_budget_pauses: int = 0
    ws_flood_closes: int = 0
    events_published: int = 0
    deliveries: int = 0
    broker_publish_failures: int = 0
    broker_republished: int = 0
    broker_unsent_dropped: int = 0
    broker_reconnects: int = 0
    duplicates_dropped: int = 0
    gap_events_filled: int = 0
    gap_events_skipped: int = 0
    longpolls_rejected: int = 0
    internal_errors: int = 0
    rate_limited: int = 0
    rate_limit_fallbacks: int = 0
    ws_auth_closes: int = 0
    http_client_disconnects: int = 0
    http_bad_requests: int = 0
    http_body_timeouts: int = 0
    http_header_timeouts: int = 0
    http_connections_refused: int = 0
    http_connections_shed: int = 0
    # Clickstream (issue 15): gateway/clickstream/.
    clickstream_events_accepted: int = 0
    """Events taken into a node's buffer."""
    clickstream_events_refused_full: int = 0
    """Valid events refused with server_busy because the buffer was full."""
    clickstream_events_written: int = 0
    """Events a sink wrote (a file line, or a Kinesis record the stream took)."""
    clickstream_records_retried: int = 0
    """Kinesis records sent again after their PutRecords entry (or call) failed."""
    clickstream_records_dead_lettered: int = 0
    """Kinesis records written to the dead-letter file after the last retry failed."""
    clickstream_flush_failures: int = 0
    """Sink writes that failed; their events stay buffered for the next flush."""
    gauges: dict[str, Callable[[], float]] = field(default_factory=dict)
    counters: dict[str, Callable[[], float]] = field(default_factory=dict)
    """Counters kept elsewhere (handlers), read when scraped."""
    histograms: dict[str, HistogramFamily] = field(default_factory=_histograms)
    """Latency histograms by full name (``moosic_..._seconds``); see :func:`_histograms`."""

    def counter_values(self) -> dict[str, float]:
        """Every counter now, by its short name (``moosic_{name}_total`` at ``/metrics``): the
        fields first, then the counters kept elsewhere."""
        values: dict[str, float] = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_COUNTERS
        }
        for counter, read in sorted(self.counters.items()):
            values[counter] = read()
        return values

    def gauge_values(self) -> dict[str, float]:
        """Every gauge now, by its short name (``moosic_{name}`` at ``/metrics``)."""
        return {gauge: read() for gauge, read in sorted(self.gauges.items())}

    def histogram(self, name: str, *labels: str) -> Histogram:
        """The child to observe into, resolved once (at start-up, not per observation)."""
        return self.histograms[f"moosic_{name}_seconds"].labels(*labels)

    def family(self, name: str) -> HistogramFamily:
        return self.histograms[f"moosic_{name}_seconds"]


_NOT_COUNTERS = frozenset({"gauges", "counters", "histograms"})


class MetricsCollector(Collector):
    """A ``prometheus-client`` collector reading :class:`Metrics` when scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        metrics = self._metrics
        for counter, value in metrics.counter_values().items():
            yield CounterMetricFamily(
                f"moosic_{counter}", counter.replace("_", " "), value=float(value)
            )
        for gauge, value in metrics.gauge_values().items():
            yield GaugeMetricFamily(f"moosic_{gauge}", gauge.replace("_", " "), value=value)
        for family in metrics.histograms.values():
            out = HistogramMetricFamily(
                family.name, family.documentation, labels=list(family.label_names)
            )
            for values, child in family.children():
                out.add_metric(list(values), child.cumulative(), child.sum)
            yield out


def registry_for(metrics: Metrics) -> CollectorRegistry:
    """A registry of this app's metrics plus the process, platform and GC collectors.

    One per app (not the library's global registry): tests build many apps in one process.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(metrics))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The scrape's body and content type: OpenMetrics when ``accept`` asks for it."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
