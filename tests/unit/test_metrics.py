"""The histogram type, its bound on label sets, the collector's output and the lag envelope."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.fanout.broker import envelope, open_envelope
from gateway.fanout.hub import _stored_at
from gateway.metrics import OTHER, Histogram, HistogramFamily, Metrics, exposition, registry_for
from gateway.timed_store import OPERATIONS, TimedStore


def test_an_observation_lands_in_the_first_bucket_at_or_above_it() -> None:
    histogram = Histogram((0.1, 0.25, 1.0))
    for seconds in (0.05, 0.1, 0.2500001, 0.25, 3.0):
        histogram.observe(seconds)
    assert histogram.counts == [2, 1, 1, 1]  # le=0.1 holds 0.1 itself; +Inf the 3 s
    assert histogram.cumulative() == [("0.1", 2.0), ("0.25", 3.0), ("1.0", 4.0), ("+Inf", 5.0)]
    assert histogram.count == 5
    assert histogram.sum == pytest.approx(3.6500001)


def test_bounds_must_increase() -> None:
    with pytest.raises(ValueError, match="increasing"):
        Histogram((0.5, 0.1))
    with pytest.raises(ValueError, match="increasing"):
        Histogram(())


def test_a_family_past_its_bound_observes_into_other() -> None:
    family = HistogramFamily("moosic_x_seconds", "x", (1.0,), ("op",), max_children=3)
    family.observe(0.5, "a")
    family.observe(0.5, "b")
    family.observe(0.5, "c")  # the bound is reached with this one
    family.observe(0.5, "d")
    family.observe(0.5, "e")
    children = dict(family.children())
    assert set(children) == {("a",), ("b",), ("c",), (OTHER,)}
    assert children[(OTHER,)].count == 2
    assert family.labels("a") is children[("a",)]  # known label sets keep their own
    with pytest.raises(ValueError, match="takes labels"):
        family.labels("a", "b")


def test_the_collector_output_parses_and_keeps_every_counter_name() -> None:
    metrics = Metrics()
    metrics.deliveries = 7
    metrics.counters["feed_posts"] = lambda: 3
    metrics.gauges["ws_connections"] = lambda: 2.0
    metrics.histogram("delivery_lag").observe(0.3)
    metrics.family("op_latency").observe(0.002, "publish")
    body, content_type = exposition(registry_for(metrics), None)
    assert content_type.startswith("text/plain; version=0.0.4")
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    assert found[("moosic_deliveries_total", ())] == 7
    assert found[("moosic_ws_frames_received_total", ())] == 0
    assert found[("moosic_feed_posts_total", ())] == 3
    assert found[("moosic_ws_connections", ())] == 2
    assert found[("moosic_delivery_lag_seconds_bucket", (("le", "0.25"),))] == 0
    assert found[("moosic_delivery_lag_seconds_bucket", (("le", "0.5"),))] == 1
    assert found[("moosic_delivery_lag_seconds_count", ())] == 1
    assert found[("moosic_op_latency_seconds_count", (("op", "publish"),))] == 1
    int_fields = [
        name
        for name, kind in Metrics.__annotations__.items()
        if kind == "int" and not name.startswith("_")
    ]
    for name in int_fields:
        assert (f"moosic_{name}_total", ()) in found, name


def test_the_store_time_rides_on_the_node_field() -> None:
    data = envelope(5, "ep", b"node1", b'{"op":"event"}', 1_700_000_000_123)
    assert data.startswith(b"5 ep node1@1700000000123\n")
    assert open_envelope(data) == (5, "ep", b"node1", 1_700_000_000_123, b'{"op":"event"}')
    # The previous release's envelope (and ephemeral pushes): no store time.
    assert open_envelope(b"0  node1\n{}") == (0, "", b"node1", 0, b"{}")
    assert envelope(0, "", b"node1", b"{}") == b"0  node1\n{}"
    # What the previous release reads from ours: three fields, a node that is not itself.
    head = data.partition(b"\n")[0].split(b" ")
    assert len(head) == 3
    assert head[2] != b"node1"
    with pytest.raises(ValueError, match="invalid literal"):
        open_envelope(b"5 ep node1@x\n{}")


def test_a_fetched_event_gives_its_store_time_from_ts() -> None:
    assert _stored_at(b'{"op":"event","ts":1700000000123,"data":{}}') == 1_700_000_000_123
    assert _stored_at(b'{"op":"typing"}') == 0
    assert _stored_at(b'{"ts":true}') == 0
    assert _stored_at(b"[1]") == 0
    assert _stored_at(b"not json") == 0


class _Backend:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def append(self, *args: Any) -> str:
        await asyncio.sleep(0)
        self.calls.append("append")
        return "stored"

    async def position(self, channel: str) -> str:
        raise OSError("down")

    def health(self) -> str:
        return "fine"

    def __getattr__(self, name: str) -> Any:
        async def other(*args: Any, **kwargs: Any) -> None:
            return None

        return other


async def test_every_store_call_is_timed_failures_included() -> None:
    assert {"append", "read_since", "position", "ping", "add_feed_items"} <= set(OPERATIONS)
    assert "open" not in OPERATIONS
    assert "health" not in OPERATIONS
    family = Metrics().family("store_latency")
    backend = _Backend()
    store = TimedStore(backend, family, "sqlite")  # type: ignore[arg-type]
    assert await store.append("room:a", "u", b"{}", None) == "stored"  # type: ignore[attr-defined]
    with pytest.raises(OSError, match="down"):
        await store.position("room:a")  # type: ignore[attr-defined]
    assert store.health() == "fine"  # not a store call: the backend's own
    children = dict(family.children())
    assert children[("sqlite", "append")].count == 1
    assert children[("sqlite", "position")].count == 1
    assert set(children) == {("sqlite", "append"), ("sqlite", "position")}
