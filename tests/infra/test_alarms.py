"""The CloudWatch alarms on the gateway's own metrics, and the script that publishes them.

moto does not model CloudWatch alarms, so the template is asserted here: every alarm in the
``Moosic/Gateway`` namespace watches a metric the node's ``publish-metrics`` script (compute
stack user data) puts, and that script, run for real with ``curl`` and ``aws`` stood in for,
computes each minute's figures from the collector's own output (two scrapes a minute apart).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

from gateway.metrics import Metrics, exposition, registry_for
from infra import check
from tests.infra.expectations import STAGE, script

ALARMS_OF_THE_RULES = {
    "DeliveryLagBurnFast": "DeliveryLagOverSloShare",
    "DeliveryLagBurnSlow": "DeliveryLagOverSloShare",
    "StoreLatencyHigh": "StoreSlowCallShare",
    "RedisCircuitOpen": "RedisCircuitState",
    "SlowConsumerClosesHigh": "SlowConsumerCloses",
    "ClickstreamRefusals": "ClickstreamRefusedFull",
    "GapEventsSkipped": "GapEventsSkipped",
    "StoreUnhealthy": "StoreHealthy",
}
"""infra/observability/alerts.yml's alerts as CloudWatch alarms (readiness: ALB's own)."""


def _resources() -> dict[str, Any]:
    resolver = check.resolver_for("observability", STAGE)
    resources: dict[str, Any] = resolver.value(resolver.template["Resources"])
    return resources


def _publish_script() -> str:
    user_data = script("GatewayLaunchTemplate")
    found = re.search(
        r"cat > /opt/moosic/bin/publish-metrics <<'SCRIPT'\n(.*?)\nSCRIPT\n", user_data, re.DOTALL
    )
    assert found is not None
    return found.group(1)


def test_the_rules_alarms_exist_on_metrics_the_node_publishes() -> None:
    resources = _resources()
    published = set(re.findall(r'"MetricName=([A-Za-z]+),', _publish_script()))
    for logical_id, metric in ALARMS_OF_THE_RULES.items():
        props = resources[logical_id]["Properties"]
        assert resources[logical_id]["Type"] == "AWS::CloudWatch::Alarm"
        assert (props["Namespace"], props["MetricName"]) == ("Moosic/Gateway", metric)
        assert props["AlarmActions"] == props["OKActions"] == ["AlarmTopic-id"]
        assert props["AlarmName"].startswith(f"moosic-{STAGE}-")
    ours = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    watched = {p["MetricName"] for p in ours if p.get("Namespace") == "Moosic/Gateway"}
    assert watched <= published, sorted(watched - published)
    assert {m for m in ALARMS_OF_THE_RULES.values()} <= watched
    fast = resources["DeliveryLagBurnFast"]["Properties"]
    assert (fast["Statistic"], fast["Threshold"]) == ("Maximum", 0.144)  # 14.4x a 1% budget
    assert resources["UnhealthyNodes"]["Properties"]["MetricName"] == "UnHealthyHostCount"


def _page(metrics: Metrics) -> str:
    return exposition(registry_for(metrics), None)[0].decode()


def _run(tmp_path: Path, page: str) -> dict[str, str]:
    """Run publish-metrics once on ``page``; the ``Name=value`` pairs it put."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (tmp_path / "page.txt").write_text(page)
    put = tmp_path / "put.txt"
    for name, body in {
        "curl": f'#!/bin/bash\ncat "{tmp_path}/page.txt"\n',
        "aws": f'#!/bin/bash\nprintf "%s\\n" "$@" > "{put}"\n',
    }.items():
        path = bin_dir / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "publish-metrics").write_text(_publish_script())
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PUBLISH_METRICS_STATE": str(tmp_path / "state"),
    }
    subprocess.run(["bash", str(tmp_path / "publish-metrics")], env=env, check=True, timeout=30)
    args = put.read_text().splitlines()
    assert args[:5] == ["cloudwatch", "put-metric-data", "--region", args[3], "--namespace"]
    return dict(
        re.findall(
            r"^MetricName=([A-Za-z]+),Unit=[A-Za-z]+,Value=([^,]*),", "\n".join(args), re.MULTILINE
        )
    )


def test_publish_metrics_puts_each_minutes_shares_and_counts(tmp_path: Path) -> None:
    metrics = Metrics()
    metrics.gauges["ws_connections"] = lambda: 12
    metrics.gauges["redis_circuit_state"] = lambda: 0
    metrics.gauges["store_healthy"] = lambda: 1
    lag = metrics.histogram("delivery_lag")
    append = metrics.histogram("store_latency", "dynamodb", "append")
    position = metrics.histogram("store_latency", "dynamodb", "position")
    for _ in range(50):
        lag.observe(0.01)
    metrics.ws_slow_consumer_closes = 4
    first = _run(tmp_path, _page(metrics))
    # The first run has no earlier totals: the minute's figures are 0.
    assert first["WsConnections"] == "12.0"
    assert first["StoreHealthy"] == "1.0"
    assert first["DeliveryLagOverSloShare"] == "0.000000"
    assert first["SlowConsumerCloses"] == "0"

    for _ in range(90):
        lag.observe(0.1)
    for _ in range(10):
        lag.observe(0.3)  # 10 of this minute's 100 deliveries later than 250 ms
    for _ in range(3):
        append.observe(0.5)
    position.observe(0.001)  # 3 of 4 store calls over 250 ms, two operations summed
    metrics.ws_slow_consumer_closes = 9
    metrics.clickstream_events_refused_full = 2
    metrics.gap_events_skipped = 1
    second = _run(tmp_path, _page(metrics))
    assert second["DeliveryLagOverSloShare"] == "0.100000"
    assert second["StoreSlowCallShare"] == "0.750000"
    assert second["SlowConsumerCloses"] == "5"
    assert second["ClickstreamRefusedFull"] == "2"
    assert second["GapEventsSkipped"] == "1"

    restarted = Metrics()  # a restarted gateway counts from 0: its totals are the minute's
    restarted.gauges.update(metrics.gauges)
    restarted.ws_slow_consumer_closes = 1
    third = _run(tmp_path, _page(restarted))
    assert third["SlowConsumerCloses"] == "1"
    assert third["DeliveryLagOverSloShare"] == "0.000000"
