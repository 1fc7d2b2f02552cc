"""Process counters and gauges, rendered in the Prometheus text format at ``GET /metrics``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields


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

    def counter_values(self) -> dict[str, float]:
        """Every counter now, by its short name (``moosic_{name}_total`` at ``/metrics``): the
        fields first, then the counters kept elsewhere."""
        values: dict[str, float] = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in _READERS
        }
        for counter, read in sorted(self.counters.items()):
            values[counter] = read()
        return values

    def gauge_values(self) -> dict[str, float]:
        """Every gauge now, by its short name (``moosic_{name}`` at ``/metrics``)."""
        return {gauge: read() for gauge, read in sorted(self.gauges.items())}

    def render(self) -> str:
        lines = []
        for counter, value in self.counter_values().items():
            name = f"moosic_{counter}_total"
            lines += [f"# TYPE {name} counter", f"{name} {value}"]
        for gauge, value in self.gauge_values().items():
            name = f"moosic_{gauge}"
            lines += [f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(lines) + "\n"


_READERS = ("gauges", "counters")
