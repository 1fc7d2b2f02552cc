"""Latency histograms move when what they measure happens, and /metrics is prometheus-client's.

Two gateway processes on one Redis (and on a Redis Cluster) for the delivery lag: a publish is
observed once on every node that delivers it. One in-process node for the store, op and
long-poll histograms and the exposition itself (Prometheus text, OpenMetrics on request).
The alert rules and the Grafana dashboard name only metrics a real scrape has.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.support.clients import WsClient, bearer, register
from tests.support.servers import GatewayNode, SharedRedis, node_env, running_nodes

ROOT = Path(__file__).resolve().parents[2]
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
PROMETHEUS_OWN = {"up"}
"""Series Prometheus makes itself (per scrape target), not the gateway."""


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text scrape, parsed by prometheus-client's own parser."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def exported_names(text: str) -> set[str]:
    """Every series name a scrape can carry: samples, and each family's sample names even when
    it has no label set yet (a histogram nobody observed into)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(s.name for s in family.samples)
        if family.type == "histogram":
            names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "count", "sum"))
        elif family.type == "counter":
            names.add(f"{family.name}_total")
        else:
            names.add(family.name)
    return names


async def scrape(http: aiohttp.ClientSession, node: GatewayNode) -> str:
    async with http.get(f"{node.base_url}/metrics") as r:
        assert r.status == 200
        return await r.text()


@pytest.fixture
def nodes(shared_redis: SharedRedis, tmp_path: Path) -> Iterator[list[GatewayNode]]:
    with running_nodes(node_env(shared_redis, tmp_path), tmp_path) as started:
        yield started


async def test_a_publish_moves_the_lag_histogram_on_every_node_that_delivers_it(
    nodes: list[GatewayNode], http: aiohttp.ClientSession
) -> None:
    a, b = nodes
    alice = await register(http, "alice", base=a.base_url)
    bob = await register(http, "bob", base=b.base_url)
    on_a = await WsClient.connect(http, bob["access_token"], url=a.base_url + "/ws")
    on_b = await WsClient.connect(http, bob["access_token"], url=b.base_url + "/ws")
    await on_a.result("subscribe", channel="room:lag")
    await on_b.result("subscribe", channel="room:lag")
    before = [samples(await scrape(http, node)) for node in nodes]
    publisher = await WsClient.connect(http, alice["access_token"], url=a.base_url + "/ws")
    await publisher.result("publish", channel="room:lag", data={"n": 1})
    assert (await on_a.next_event())["data"] == {"n": 1}
    assert (await on_b.next_event())["data"] == {"n": 1}  # came from a, through Redis
    after = [samples(await scrape(http, node)) for node in nodes]

    for was, now in zip(before, after, strict=True):
        count = "moosic_delivery_lag_seconds_count"
        assert value(now, count) == value(was, count) + 1  # once per node, not per socket
        assert value(now, "moosic_delivery_lag_seconds_sum") >= value(
            was, "moosic_delivery_lag_seconds_sum"
        )
        assert value(now, "moosic_delivery_lag_seconds_bucket", le="+Inf") == value(now, count)
    was_a, now_a = before[0], after[0]
    for name, labels in [
        ("moosic_op_latency_seconds_count", {"op": "publish"}),
        ("moosic_store_latency_seconds_count", {"backend": "sqlite", "operation": "append"}),
    ]:
        assert value(now_a, name, **labels) == value(was_a, name, **labels) + 1, (name, labels)
    # The event's pipelined publish (and presence pushes: alice joined) got Redis's answer.
    publishes = "moosic_redis_latency_seconds_count"
    assert value(now_a, publishes, kind="publish") > value(was_a, publishes, kind="publish")
    # Scripts and commands someone waited for (presence, rate limits) are timed too.
    assert value(now_a, "moosic_redis_latency_seconds_count", kind="script") > 0
    for conn in (on_a, on_b, publisher):
        await conn.close()


async def test_alert_rules_and_dashboard_name_only_exported_metrics(
    nodes: list[GatewayNode], http: aiohttp.ClientSession
) -> None:
    exported = exported_names(await scrape(http, nodes[0])) | PROMETHEUS_OWN
    rules = yaml.safe_load((ROOT / "infra/observability/alerts.yml").read_text())
    records = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((ROOT / "infra/observability/dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    named = {
        name
        for expr in exprs
        for name in re.findall(r"\b((?:moosic|process|python)_[a-z0-9_]+|up)\b(?![(:])", expr)
    }
    assert {"moosic_delivery_lag_seconds_bucket", "moosic_store_latency_seconds_bucket"} <= named
    assert named - exported - records == set()
    # Every rule's metric is one of ours, and the records the alerts use are defined.
    used = {m for expr in exprs for m in re.findall(r"\bmoosic:[a-z0-9_:]+", expr)}
    assert used <= records


async def test_store_op_and_long_poll_histograms_move(client: Any) -> None:
    async with client.get("/metrics") as r:
        before = samples(await r.text())
    alice = await register(client, "alice")
    async with client.post(
        "/v1/channels/room:h/messages", json={"data": {"n": 1}}, headers=bearer(alice)
    ) as r:
        assert r.status == 201
    async with client.get(
        "/v1/channels/room:h/events?since=1&timeout=0.1", headers=bearer(alice)
    ) as r:
        assert (await r.json())["events"] == []
    async with client.get("/metrics") as r:
        after = samples(await r.text())

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("moosic_op_latency_seconds_count", op="publish") == 1  # REST goes through ops
    assert moved("moosic_op_latency_seconds_count", op="events") == 1
    assert moved("moosic_store_latency_seconds_count", backend="sqlite", operation="append") == 1
    assert moved("moosic_store_latency_seconds_count", backend="sqlite", operation="create_user")
    assert moved("moosic_longpoll_wait_seconds_count", outcome="timeout") == 1
    assert moved("moosic_longpoll_wait_seconds_sum", outcome="timeout") > 0
    # Nothing delivered (no subscriber): no lag observed.
    assert moved("moosic_delivery_lag_seconds_count") == 0


async def test_metrics_speak_prometheus_text_and_openmetrics(client: Any) -> None:
    async with client.get("/metrics") as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await r.text()
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert families["moosic_deliveries"] == "counter"
    assert families["moosic_ws_connections"] == "gauge"
    assert families["moosic_delivery_lag_seconds"] == "histogram"
    assert families["process_resident_memory_bytes"] == "gauge"  # prometheus-client's own
    assert families["python_gc_collections"] == "counter"
    async with client.get("/metrics", headers={"Accept": OPENMETRICS}) as r:
        assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        open_text = await r.text()
    assert open_text.endswith("# EOF\n")
    open_families = {f.name: f.type for f in openmetrics_families(open_text)}
    assert open_families["moosic_deliveries"] == "counter"
    assert open_families["moosic_delivery_lag_seconds"] == "histogram"


async def test_every_documented_metric_keeps_its_name(
    nodes: list[GatewayNode], http: aiohttp.ClientSession, shared_redis: SharedRedis
) -> None:
    """The metrics tables of docs/operations.md, against a real scrape of a node on Redis."""
    docs = (ROOT / "docs/operations.md").read_text()
    rows = re.findall(
        r"^\| `(moosic_[a-z0-9_]+)` \| (counter|gauge|histogram) \|", docs, re.MULTILINE
    )
    assert len(rows) > 50
    found = {f.name: f.type for f in text_string_to_metric_families(await scrape(http, nodes[0]))}
    for name, kind in rows:
        if name.startswith("moosic_redis_cluster_") and not shared_redis.cluster:
            continue  # a Redis Cluster's own
        family = name.removesuffix("_total") if kind == "counter" else name
        assert found.get(family) == kind, name
