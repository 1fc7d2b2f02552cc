"""infra.capacity: its arithmetic on fixed inputs, its first-limit logic, its CLI, and the sources
of every number in infra/capacity_inputs.json (issue 14)."""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra import capacity
from infra.capacity import Inputs, Need

ROOT = Path(__file__).resolve().parents[2]
RAW = json.loads(capacity.INPUTS_PATH.read_text())
LINE_SOURCE = re.compile(r"^([\w./-]+):(\d+)$")


# -- the inputs file ------------------------------------------------------------------------


def _numbers(text: str) -> list[float]:
    """Numbers written in a line of the docs: 1,638 → 1638, 100k → 100000, 4.63 → 4.63."""
    found = []
    for digits, suffix in re.findall(r"(\d[\d,]*(?:\.\d+)?)(k?)", text):
        value = float(digits.replace(",", ""))
        found.append(value * 1000 if suffix == "k" else value)
    return found


def _entries(node: Any, path: str) -> list[tuple[str, dict[str, Any]]]:
    """Every dict holding a number, with where it is; fails on a number outside such a dict."""
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        numbers = [k for k, v in node.items() if isinstance(v, int | float)]
        if numbers:
            assert "value" in node, f"{path}: numbers {numbers} outside an entry"
            out.append((path, node))
        for key, value in node.items():
            if isinstance(value, dict | list):
                out += _entries(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            out += _entries(item, f"{path}[{i}]")
    return out


ENTRIES = _entries(RAW, "inputs")


def test_every_number_in_the_inputs_has_a_source() -> None:
    assert len(ENTRIES) > 80
    for path, entry in ENTRIES:
        assert isinstance(entry.get("source"), str), path
        assert entry["source"].strip(), path
        assert isinstance(entry.get("unit"), str), path
        assert entry["unit"].strip(), path
        section = path.split(".")[1]
        if section in ("workload", "assumptions"):
            assert entry["source"].startswith("assumption"), path
            assert entry.get("measure"), f"{path}: an assumption says what to measure"
        if section == "prices":
            assert entry.get("as_of") == RAW["prices"]["as_of"], f"{path}: dated"
            assert entry["source"].startswith("https://aws.amazon.com/"), path


def test_every_cited_line_shows_its_number() -> None:
    cited = 0
    for path, entry in ENTRIES:
        match = LINE_SOURCE.match(entry["source"])
        section = path.split(".")[1]
        if section in ("measured", "deployment"):
            assert match, f"{path}: measured and deployed figures cite FILE:LINE"
        if not match:
            continue
        file, line = ROOT / match[1], int(match[2])
        text = file.read_text().splitlines()[line - 1]
        quote = entry["quote"]
        assert quote in text, f"{path}: {match[0]} reads {text!r}, not {quote!r}"
        if not entry.get("derived"):
            assert entry["value"] in _numbers(quote), f"{path}: {entry['value']} not in {quote!r}"
        cited += 1
    assert cited >= 40


def test_the_docs_named_in_the_brief_are_the_measured_sources() -> None:
    matches = [LINE_SOURCE.match(e["source"]) for _, e in ENTRIES]
    files = {m[1] for m in matches if m is not None}
    assert {"docs/benchmarks.md", "docs/storage.md"} <= files


def test_the_report_labels_are_the_bench_harness_labels() -> None:
    source = (ROOT / "loadtest/bench/benchkit/report.py").read_text()
    for label in capacity.REPORT_LABELS.values():
        scenario, _, figure = label.partition(": ")
        assert f'"{scenario}"' in source or f'"{label}"' in source, label
        assert figure in source, label


def test_the_inputs_load_as_numbers() -> None:
    inputs = capacity.load_inputs()
    assert inputs.values["cpu_us_per_delivery"] == 4.63
    assert set(inputs.prices) == set(capacity.REGIONS)
    assert inputs.cloudfront_tiers[-1][0] == math.inf
    assert inputs.prices_as_of == RAW["prices"]["as_of"]


# -- the per-unit costs worked out of the measured figures ----------------------------------


def test_derived_costs_of_the_measured_figures() -> None:
    d = capacity.derived(capacity.load_inputs().values)
    # S4: 41.2 % of a core for 2,000 messages/s = 0.412e6 / 2000 = 206 µs per message,
    # less its 2 deliveries at 4.63 µs = 206 - 9.26 = 196.74 µs.
    assert d["publish_us"] == pytest.approx(206.0)
    assert d["publish_overhead_us"] == pytest.approx(196.74)
    # S3: 1,638 opens/s on one core = 1e6 / 1638 = 610.5 µs per open.
    assert d["open_us"] == pytest.approx(610.5, abs=0.05)
    # S1: Redis 1.33 % of a core at 100k deliveries / 1,000 subscribers = 100 publishes/s of
    # 2 commands: 13,300 µs/s / 200 = 66.5 µs per command; at 60 %: 600,000 / 66.5 = 9,022.6/s.
    assert d["redis_us_per_op"] == pytest.approx(66.5)
    assert d["redis_ops_per_shard_s"] == pytest.approx(9022.56, abs=0.01)
    # c7g.large: (4 GiB - 1,024 MiB) = 3,072 MiB = 3,145,728 KiB / (8.91 x 2) = 176,528 sockets.
    assert d["connections_per_node_memory"] == pytest.approx(176_528.0, abs=1)
    assert d["connections_per_node_fd"] == 1_048_576 - 128 - 256
    assert d["retry_window_s"] == 4.5


# -- the arithmetic on fixed inputs ---------------------------------------------------------

FIXED = {
    "peak_online_share": 0.1,  # 1,000,000 users → 100,000 online
    "connections_per_online_user": 1.0,  # → 100,000 connections
    "msgs_per_user_hour": 36.0,  # 100,000 x 36 / 3600 = 1,000 messages/s
    "recipients_per_msg": 3.0,  # → 3,000 deliveries/s
    "likes_per_user_hour": 36.0,  # 1,000 likes/s
    "comments_per_user_hour": 0.0,
    "mark_reads_per_user_hour": 0.0,
    "history_pages_per_user_hour": 0.0,
    "feed_reads_per_user_hour": 0.0,
    "opens_per_connection_hour": 36.0,  # 1,000 opens/s
    "posts_per_user_hour": 0.036,  # 1 post/s
    "followers_per_post": 150.0,
    "video_minutes_per_user_hour": 6.0,  # 100,000 x 360 s / 3600 = 10,000 watch-seconds/s
    "events_per_user_hour": 72.0,  # 2,000 records/s
    "event_bytes": 1000.0,
    "frame_bytes": 500.0,
    "dm_group_share": 0.5,
    "subscriptions_per_connection": 5.0,
    "access_token_ttl_s": 1000.0,  # 100 refreshes/s
    "peak_to_average": 2.0,
    "cpu_us_per_delivery": 5.0,
    "s4_server_cpu_pct": 50.0,  # 0.5e6 / 2500 = 200 µs per message, less 2 x 5 = 190
    "s4_messages_per_s": 2500.0,
    "s4_deliveries_per_message": 2.0,
    "other_op_cost_vs_publish": 1.0,
    "opens_per_s": 2000.0,  # 500 µs per open
    "processes_per_node": 1.0,
    "cpu_target_pct": 50.0,  # 500,000 µs of CPU a second per node
    "core_speed_factor": 1.0,
    "node_memory_gib": 4.0,
    "node_reserved_mib": 1024.0,
    "idle_kib_per_connection": 10.0,
    "memory_factor_active": 2.0,  # 3,145,728 KiB / 20 = 157,286.4 connections per node
    "nofile": 100_128.0,
    "fd_reserve": 128.0,
    "fds_other": 0.0,  # 100,000 connections per node
    "storm_seconds": 50.0,
    "retry_min_ms": 500.0,
    "retry_max_ms": 5000.0,
    "min_nodes": 2.0,
    "connections_target": 20_000.0,
    "s1_redis_cpu_pct": 1.0,
    "s1_deliveries_per_s": 100_000.0,
    "s1_subscribers": 1000.0,
    "redis_ops_per_publish": 2.0,  # 10,000 µs/s / (100 x 2) = 50 µs per command
    "redis_cpu_target_pct": 25.0,  # 250,000 / 50 = 5,000 commands/s per shard
    "redis_ops_per_like": 2.0,
    "redis_ops_per_open": 3.0,
    "redis_ops_per_other_op": 1.0,
    "recovery_ttl_s": 300.0,
    "message_item_bytes": 350.0,
    "redis_memory_overhead": 2.0,
    "redis_bytes_per_online_user": 600.0,
    "redis_node_memory_gib": 1.0,
    "redis_reserved_memory_pct": 25.0,
    "redis_replicas_per_shard": 1.0,
    "append_wru_with_client_id": 8.0,
    "append_dm_group_extra_wru": 2.0,
    "mark_read_rru": 1.0,
    "mark_read_wru": 1.0,
    "refresh_use_wru": 1.0,
    "refresh_use_rru": 1.0,
    "refresh_add_wru": 1.0,
    "history_head_rru": 1.0,
    "history_page_rru": 2.5,
    "position_rru": 1.0,
    "like_wru": 1.0,
    "comment_wru": 4.0,
    "counts_flush_wru": 1.0,
    "flush_share": 0.5,
    "post_wru": 4.0,
    "feed_item_wru": 1.0,
    "feed_read_rru": 1.0,
    "dax_hit_ratio": 0.8,
    "dax_requests_per_page": 2.0,
    "dax_node_requests_per_s": 20_000.0,
    "dax_min_nodes": 3.0,
    "dax_max_nodes": 11.0,
    "dynamodb_table_quota_units": 40_000.0,
    "video_kbps": 1000.0,
    "segment_seconds": 4.0,
    "playlist_share": 0.0,
    "cloudfront_gbps_per_distribution": 150.0,
    "cloudfront_rps_per_distribution": 250_000.0,
    "kinesis_shard_bytes_per_s": 1_048_576.0,
    "kinesis_shard_records_per_s": 1000.0,
    "kinesis_target_pct": 100.0,
    "kinesis_put_unit_bytes": 25_600.0,
    "alb_lcu_active_connections": 3000.0,
    "alb_lcu_new_connections_per_s": 25.0,
    "nat_gateways": 2.0,
    "hours_per_month": 730.0,
}
PRICES = {
    "ec2_node_hour": 0.1,
    "redis_node_hour": 0.2,
    "dax_node_hour": 0.3,
    "dynamodb_wru_million": 1.0,
    "dynamodb_rru_million": 0.1,
    "kinesis_shard_hour": 0.01,
    "kinesis_put_units_million": 0.02,
    "alb_hour": 0.02,
    "alb_lcu_hour": 0.01,
    "nat_hour": 0.05,
    "cloudfront_10k_requests": 0.01,
    "inter_region_gb": 0.05,
}


def fixed_inputs(**changes: float) -> Inputs:
    real = capacity.load_inputs()
    assert set(FIXED) <= set(real.values), set(FIXED) - set(real.values)
    assert set(PRICES) == set(real.prices["us-east-1"])
    values = {**real.values, **FIXED, **changes}
    prices = {r: dict(PRICES) for r in capacity.REGIONS}
    return Inputs(values, prices, "test", ((10.0, 0.1), (math.inf, 0.05)))


def one(inputs: Inputs, users: float = 1_000_000) -> capacity.Scenario:
    return capacity.scenario(inputs, "fixed", users, 1.0)


def test_load_on_fixed_inputs() -> None:
    load = one(fixed_inputs()).load
    assert load.online == 100_000
    assert load.connections == 100_000
    assert load.messages == pytest.approx(1000)
    assert load.deliveries == pytest.approx(3000)
    assert load.likes == pytest.approx(1000)
    assert load.opens == pytest.approx(1000)
    assert load.refreshes == pytest.approx(100)
    assert load.posts == pytest.approx(1)
    assert load.watch_seconds == pytest.approx(10_000)
    assert load.events == pytest.approx(2000)


def test_gateway_nodes_on_fixed_inputs() -> None:
    gateway = one(fixed_inputs()).tiers["gateway"]
    needs = {n.limit: n.units for n in gateway.needs}
    # CPU: 3,000 deliveries x 5 + 1,000 messages x 190 + 1,000 likes x 190 + 1,000 opens x 500
    #    = 15,000 + 190,000 + 190,000 + 500,000 = 895,000 µs/s over 500,000 per node = 1.79.
    assert gateway.detail["cpu_us_per_s"] == pytest.approx(895_000)
    assert needs["CPU"] == pytest.approx(1.79)
    assert needs["memory"] == pytest.approx(100_000 / 157_286.4)  # 0.636
    assert needs["file descriptors"] == pytest.approx(1.0)
    # Storm: 100,000 / 50 s = 2,000 opens/s over 2,000 per node = 1.0.
    assert needs["reconnect storm (opens/s)"] == pytest.approx(1.0)
    # Node loss: n (n - 1) ≥ 100,000 / (4.5 s x 2,000) = 11.1: 3 x 2 = 6 is short, 4 x 3 = 12.
    assert needs["node loss (opens/s)"] == 4
    assert (gateway.count, gateway.first_limit) == (4, "node loss (opens/s)")
    # The stack's ConnectionsPerNode 20,000: 100,000 / 20,000 = 5 nodes.
    assert gateway.detail["nodes_at_stack_connections_target"] == 5


def test_a_shorter_storm_makes_the_storm_the_first_limit() -> None:
    gateway = one(fixed_inputs(storm_seconds=10.0)).tiers["gateway"]
    # 100,000 / 10 s = 10,000 opens/s over 2,000 per node = 5 nodes, more than node loss's 4.
    assert (gateway.count, gateway.first_limit) == (5, "reconnect storm (opens/s)")


def test_redis_shards_on_fixed_inputs() -> None:
    redis = one(fixed_inputs()).tiers["redis"]
    # 1,000 x 2 (publish) + 1,000 x 2 (like) + 1,000 x 3 (open) + 4 nodes x 1 = 7,004/s
    # over 5,000 per shard = 1.4 → 2 shards.
    assert redis.detail["ops_per_s"] == pytest.approx(7004)
    # Memory: 1,000 msg/s x 300 s x 350 B x 2 = 210,000,000 + 100,000 x 600 = 270,000,000 B
    # over 1 GiB x 75 % = 805,306,368 B = 0.335.
    assert redis.detail["memory_bytes"] == pytest.approx(270_000_000)
    assert (redis.count, redis.first_limit) == (2, "ops/s (CPU)")


def test_dynamodb_units_on_fixed_inputs() -> None:
    s = one(fixed_inputs())
    u = s.dynamodb
    assert u["messages"] == {"wru": pytest.approx(6000), "rru": 0}  # 1,000 x (8 - 2 head)
    assert u["channels"]["wru"] == pytest.approx(2000)  # the head, 2 WRU in the transaction
    assert u["channels"]["rru"] == pytest.approx(5000)  # 1,000 opens x 5 positions
    assert u["groups"]["wru"] == pytest.approx(1000)  # 1,000 x 0.5 in dm:/group: x 2
    assert u["refresh_tokens"] == {"wru": pytest.approx(200), "rru": pytest.approx(100)}
    assert u["videos"]["wru"] == pytest.approx(1500)  # 1,000 likes + 1,000 x 0.5 flushes
    assert u["follows"]["wru"] == pytest.approx(154)  # 1 post x (4 + 150 feed items)
    dynamodb = s.tiers["dynamodb"]
    assert dynamodb.detail["wru_per_s"] == pytest.approx(10_854)
    assert dynamodb.detail["rru_per_s"] == pytest.approx(5100)
    # Busiest: messages 6,000 WRU/s of the 40,000 quota = 15 %, no table over its quota.
    assert dynamodb.first_limit == "messages WRU (table quota)"
    assert dynamodb.detail["busiest_share_of_quota"] == pytest.approx(0.15)
    assert dynamodb.count == 0


def test_cloudfront_kinesis_and_dax_on_fixed_inputs() -> None:
    s = one(fixed_inputs())
    cf = s.tiers["cloudfront"]
    # 10,000 watch-s/s x 1 Mbit/s = 10 Gbit/s + 3,000 deliveries x 500 B x 8 = 0.012 Gbit/s.
    assert cf.detail["gbps"] == pytest.approx(10.012)
    # 10,000 / 4 s segments = 2,500 requests/s + 1,000 opens.
    assert cf.detail["requests_per_s"] == pytest.approx(3500)
    assert (cf.count, cf.first_limit) == (1, "one distribution")
    kinesis = s.tiers["kinesis"]
    # 2,000 records/s of 1,000 B: 2,000,000 / 1,048,576 = 1.91 shards by bytes, 2.0 by records.
    assert (kinesis.count, kinesis.first_limit) == (2, "records/s")
    assert (s.tiers["dax"].count, s.tiers["dax"].first_limit) == (3, "minimum (3 for the AZs)")


def test_monthly_cost_on_fixed_inputs() -> None:
    cost = one(fixed_inputs()).cost["us-east-1"]
    assert cost["gateway nodes"] == pytest.approx(4 * 0.1 * 730)  # 292
    assert cost["Redis"] == pytest.approx(2 * 2 * 0.2 * 730)  # 2 shards x (primary + replica)
    assert cost["DAX"] == pytest.approx(3 * 0.3 * 730)
    # Average = peak / 2: a month is 730 x 3600 / 2 = 1,314,000 peak-seconds.
    # 10,854 WRU/s x 1,314,000 x $1/M + 5,100 RRU/s x 1,314,000 x $0.1/M = 14,262.16 + 670.14.
    assert cost["DynamoDB"] == pytest.approx(14_932.296)
    # 10.012 Gbit/s / 8 x 1,314,000 = 1,644,471 GB: 10,000 x 0.1 + 1,634,471 x 0.05 = 82,723.55;
    # requests 3,500 x 1,314,000 / 10,000 x $0.01 = 4,599.
    assert cost["CloudFront"] == pytest.approx(82_723.55 + 4599.0)
    # 2 shards x 730 h x $0.01 + 2,000 x 1,314,000 = 2.628e9 PUT units x $0.02/M = 14.6 + 52.56.
    assert cost["Kinesis"] == pytest.approx(14.6 + 52.56)
    # LCU: max(50,000 average connections / 3,000, 500 opens/s / 25) = 20; (0.02 + 20 x 0.01) x 730.
    assert cost["ALB"] == pytest.approx(160.6)
    assert cost["NAT"] == pytest.approx(2 * 0.05 * 730)
    parts = sum(v for k, v in cost.items() if k != "total")
    assert cost["total"] == pytest.approx(parts)


def test_tiered_price() -> None:
    tiers = ((10.0, 0.1), (math.inf, 0.05))
    assert capacity.tiered(0, tiers) == 0
    assert capacity.tiered(10_000, tiers) == pytest.approx(1000)  # 10 TB = 10,000 GB at 0.1
    assert capacity.tiered(15_000, tiers) == pytest.approx(1250)  # + 5,000 GB at 0.05


# -- the first-limit logic ------------------------------------------------------------------


def test_first_limit_is_the_largest_need() -> None:
    needs = [Need("a", 1.2), Need("b", 3.5), Need("c", 3.5), Need("d", 0.1)]
    assert capacity.first_limit(needs, 2, "minimum") == (4, "b")  # the first of equal needs


def test_first_limit_is_the_minimum_when_everything_fits_in_it() -> None:
    assert capacity.first_limit([Need("a", 1.9), Need("b", 2.0)], 2, "minimum") == (2, "minimum")
    assert capacity.first_limit([Need("a", 2.01)], 2, "minimum") == (3, "a")
    assert capacity.first_limit([], 3, "minimum") == (3, "minimum")


def test_first_limit_ignores_float_noise() -> None:
    assert capacity.first_limit([Need("a", 3.0000000001)], 1, "m") == (3, "a")


@pytest.mark.parametrize("k", [0.0, 0.5, 1.9, 2.0, 2.1, 6.0, 11.1, 12.0, 99.0, 12_345.6])
def test_node_loss_is_the_fewest_nodes_that_hold(k: float) -> None:
    n = capacity.nodes_for_node_loss(k * 4.5 * 2000, 4.5, 2000)
    assert n >= 2
    assert n * (n - 1) >= k - 1e-9
    assert n == 2 or (n - 1) * (n - 2) < k


# -- monotonicity ---------------------------------------------------------------------------


def test_more_users_never_need_fewer_of_anything() -> None:
    inputs = capacity.load_inputs()
    previous: capacity.Scenario | None = None
    users = 1000.0
    while users <= 1e9:
        s = one(inputs, users)
        if previous is not None:
            for name, tier in s.tiers.items():
                assert tier.count >= previous.tiers[name].count, (name, users)
                for need, before in zip(tier.needs, previous.tiers[name].needs, strict=True):
                    assert need.units >= before.units - 1e-9, (name, need.limit, users)
            for region in capacity.REGIONS:
                for item, usd in s.cost[region].items():
                    assert usd >= previous.cost[region][item] - 1e-6, (region, item, users)
        previous = s
        users *= 1.7


def test_the_plan_grows_with_its_multipliers() -> None:
    scenarios = capacity.plan(capacity.load_inputs(), 200_000)
    assert [s.multiplier for s in scenarios] == [1, 6, 10, 100]
    for a, b in itertools.pairwise(scenarios):
        assert b.load.connections > a.load.connections
        assert all(b.tiers[t].count >= a.tiers[t].count for t in a.tiers)


# -- the command line -----------------------------------------------------------------------


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.capacity", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_cli_prints_the_table() -> None:
    out = run("--users", "200000", "--peak-online-share", "0.2")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "## Capacity for 200,000 users"
    assert "|  | today | surge (6x) | 10x | 100x |" in lines
    for label in ("gateway nodes", "Redis shards", "DAX nodes", "Kinesis shards", "CloudFront"):
        assert any(line.startswith(f"| {label}") for line in lines), label
    assert any(line.startswith("| **monthly cost, ap-southeast-1**") for line in lines)
    # The table is what the functions compute, not text of its own.
    inputs = capacity.build_inputs(
        capacity.parse_args(["--users", "200000", "--peak-online-share", "0.2"])
    )
    scenarios = capacity.plan(inputs, 200_000)
    assert out.stdout == capacity.markdown(inputs, 200_000, scenarios)


def test_the_cli_json_and_its_options() -> None:
    out = run(
        "--users", "1000", "--json", "--msgs-per-user-hour", "60", "--set", "storm_seconds=30"
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert [s["name"] for s in doc["scenarios"]] == ["today", "surge (6x)", "10x", "100x"]
    assert doc["overridden"] == {"msgs_per_user_hour": "command line", "storm_seconds": "--set"}
    assert doc["scenarios"][0]["load"]["messages"] == pytest.approx(1000 * 0.2 * 60 / 3600)


def test_the_cli_takes_the_figures_of_a_bench_report(tmp_path: Path) -> None:
    labels = capacity.REPORT_LABELS
    report = {"medians": {"moosic": {labels["cpu_us_per_delivery"]: 9.26, "other": 1}}}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(report))
    out = run("--users", "100000", "--report", str(path), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["overridden"] == {"cpu_us_per_delivery": str(path)}
    # 9.26 µs per delivery doubles S4's delivery share: 206 - 2 x 9.26 = 187.48.
    assert doc["derived"]["publish_overhead_us"] == pytest.approx(187.48)


def test_the_cli_refuses_bad_input(tmp_path: Path) -> None:
    assert run("--users", "1000", "--set", "no_such_input=1").returncode == 2
    assert run("--users", "1000", "--set", "storm_seconds").returncode == 2
    assert run("--users", "0").returncode == 2
    not_a_report = tmp_path / "x.json"
    not_a_report.write_text("{}")
    out = run("--users", "1000", "--report", str(not_a_report))
    assert out.returncode == 2
    assert "not a bench report" in out.stderr


def test_docs_capacity_shows_what_the_command_prints() -> None:
    doc = (ROOT / "docs/capacity.md").read_text()
    assert "`.venv/bin/python -m infra.capacity --users 200000`" in doc
    inputs = capacity.load_inputs()
    table = capacity.markdown(inputs, 200_000, capacity.plan(inputs, 200_000))
    assert table in doc, "docs/capacity.md: run the command again and paste its table"


def test_tables_past_their_quota_are_counted_once() -> None:
    # 100x the fixed load: messages 600,000 WRU/s, channels 200,000 WRU + 500,000 RRU (one
    # table, both over), groups 100,000, videos 150,000; refresh_tokens 20,000 and follows
    # 15,400 stay under 40,000: 4 tables.
    s = one(fixed_inputs(), 100_000_000)
    assert s.tiers["dynamodb"].count == 4


# -- regions (issue 20) ---------------------------------------------------------------------

REGIONS_FIXED = {
    "region_share_in": 0.1,
    "region_share_us": 0.1,
    "region_share_cn": 0.05,  # served from ap-southeast-1: KH's region
    "region_share_au": 0.1,
    "cross_region_message_share": 0.3,
    "forward_share": 0.5,
    "relay_regions_per_message": 1.0,
    "link_forward_bytes": 900.0,
    "link_event_bytes": 450.0,
}


def test_users_per_region_on_fixed_inputs() -> None:
    v = fixed_inputs(**REGIONS_FIXED).values
    found = capacity.region_users(v, 1_000_000)
    assert [(n, a) for n, a, _u in found] == [
        ("kh", "ap-southeast-1"),
        ("in", "ap-south-1"),
        ("us", "us-east-1"),
        ("au", "ap-southeast-2"),
    ]
    # KH keeps 1 - 0.3 (China's 5% are served from KH's region, not a region of their own).
    assert [u for _n, _a, u in found] == pytest.approx([700_000, 100_000, 100_000, 100_000])
    assert sum(u for _n, _a, u in found) == pytest.approx(1_000_000)


def test_region_shares_must_leave_users_at_home() -> None:
    with pytest.raises(capacity.InputError, match="no users to the home region"):
        capacity.region_users(fixed_inputs(**{**REGIONS_FIXED, "region_share_au": 0.8}).values, 1)
    with pytest.raises(capacity.InputError, match="negative"):
        capacity.region_users(fixed_inputs(**{**REGIONS_FIXED, "region_share_in": -0.1}).values, 1)
    no_india = capacity.region_users(
        fixed_inputs(**{**REGIONS_FIXED, "region_share_in": 0.0}).values, 1_000_000
    )
    assert [n for n, _a, _u in no_india] == ["kh", "us", "au"]


def test_link_traffic_on_fixed_inputs() -> None:
    inputs = fixed_inputs(**REGIONS_FIXED)
    plans = {p.name: p for p in capacity.region_plan(inputs, 1_000_000)}
    india = plans["in"]
    # 100,000 users → 10,000 online x 36/h = 100 messages/s; 30% cross-region = 30/s;
    # half of those published away from home: 15 forwarded/s; each relayed to 1 region: 30/s.
    assert india.scenario.load.messages == pytest.approx(100)
    assert india.link.cross_messages == pytest.approx(30)
    assert india.link.forwarded == pytest.approx(15)
    assert india.link.relayed == pytest.approx(30)
    # 15 x 900 + 30 x 450 = 27,000 B/s = 0.216 Mbit/s at the peak; a month at the average
    # (peak ÷ 2): 27,000 x 730 x 3600 / 2 = 35.478 GB, at 0.05 USD/GB = 1.7739 USD.
    assert india.link.mbps == pytest.approx(0.216)
    assert india.link.gb_month == pytest.approx(35.478)
    assert india.link.cost_month == pytest.approx(1.7739)
    kh = plans["kh"]
    assert kh.link.forwarded == pytest.approx(7 * 15)
    # Each region is sized on its own users: KH's scenario is the one-region model at 700,000.
    assert kh.scenario.tiers["gateway"].count == one(inputs, 700_000).tiers["gateway"].count


def test_no_cross_region_messages_no_link_traffic() -> None:
    inputs = fixed_inputs(**{**REGIONS_FIXED, "cross_region_message_share": 0.0})
    for plan in capacity.region_plan(inputs, 1_000_000):
        assert (plan.link.forwarded, plan.link.relayed, plan.link.cost_month) == (0, 0, 0)


def test_link_traffic_grows_with_the_cross_region_share() -> None:
    low = capacity.region_plan(fixed_inputs(**REGIONS_FIXED), 1_000_000)
    high = capacity.region_plan(
        fixed_inputs(**{**REGIONS_FIXED, "cross_region_message_share": 0.6}), 1_000_000
    )
    for a, b in zip(low, high, strict=True):
        assert b.link.gb_month == pytest.approx(2 * a.link.gb_month)


def test_regions_priced_as_their_nearest_priced_region() -> None:
    inputs = fixed_inputs(**REGIONS_FIXED)
    inputs.prices["us-east-1"]["inter_region_gb"] = 0.02
    plans = {p.name: p for p in capacity.region_plan(inputs, 1_000_000)}
    assert plans["us"].link.cost_month == pytest.approx(plans["us"].link.gb_month * 0.02)
    assert plans["au"].link.cost_month == pytest.approx(plans["au"].link.gb_month * 0.05)


def test_the_cli_prints_the_regions_table() -> None:
    out = run("--users", "200000", "--regions")
    assert out.returncode == 0, out.stderr
    inputs = capacity.load_inputs()
    assert out.stdout == capacity.regions_markdown(
        inputs, 200_000, capacity.region_plan(inputs, 200_000)
    )
    doc = (ROOT / "docs/capacity.md").read_text()
    assert "`.venv/bin/python -m infra.capacity --users 200000 --regions`" in doc
    assert out.stdout in doc, "docs/capacity.md: run the command again and paste its table"
