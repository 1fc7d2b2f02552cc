"""How many of what Moosic needs on AWS, from this repository's own measured figures (issue 14).

``python -m infra.capacity --users N [--peak-online-share 0.2] [--msgs-per-user-hour 20] …``
prints a Markdown table (``--json`` for JSON) for today's users, the 500% surge (6x), 10x and
100x: gateway nodes, Redis shards, DynamoDB units per table, DAX nodes, CloudFront, Kinesis
shards and the monthly cost in us-east-1 and ap-southeast-1, each tier with the limit it hits
first. Every input is in ``infra/capacity_inputs.json`` with its source; ``--report`` takes the
gateway's figures from a bench report (``loadtest/reports/bench-*.json``) instead, and
``--set KEY=VALUE`` overrides any input. ``docs/capacity.md`` explains the model.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

INPUTS_PATH = Path(__file__).with_name("capacity_inputs.json")
SECTIONS = ("measured", "deployment", "aws", "workload", "assumptions")
REGIONS = ("us-east-1", "ap-southeast-1")
SCENARIOS: tuple[tuple[str, float], ...] = (
    ("today", 1.0),
    ("surge (6x)", 6.0),
    ("10x", 10.0),
    ("100x", 100.0),
)
TABLES = ("messages", "channels", "groups", "refresh_tokens", "videos", "follows", "accounts")

# The bench report's headline labels (loadtest/bench/benchkit/report.py, METRICS) whose gateway
# medians replace the measured inputs of the same meaning.
REPORT_LABELS: dict[str, str] = {
    "cpu_us_per_delivery": "S1 fan-out: server CPU µs per delivery at fixed rate",
    "s1_deliveries_per_s": "S1 fan-out: deliveries/s at fixed rate",
    "s1_redis_cpu_pct": "S1 fan-out: Redis CPU % at fixed rate",
    "idle_kib_per_connection": "S3 idle: RSS KiB per connection",
    "opens_per_s": "S3 idle: connections opened/s",
    "s4_server_cpu_pct": "S4 chat: server CPU %",
}


class InputError(ValueError):
    """An inputs file or a bench report that cannot be used."""


@dataclass(frozen=True)
class Inputs:
    """Every number of the inputs file, flat: ``values[key]`` and ``prices[region][key]``."""

    values: dict[str, float]
    prices: dict[str, dict[str, float]]
    prices_as_of: str
    cloudfront_tiers: tuple[tuple[float, float], ...] = ()
    """CloudFront's price per GB by volume: (up to this many TB a month, USD per GB)."""
    overridden: dict[str, str] = field(default_factory=dict)
    """Inputs not taken from the file, and where they came from instead."""

    def replace(self, changes: Mapping[str, float], origin: str) -> Inputs:
        unknown = sorted(set(changes) - set(self.values))
        if unknown:
            raise InputError(f"unknown input(s): {', '.join(unknown)}")
        values = {**self.values, **changes}
        overridden = {**self.overridden, **dict.fromkeys(changes, origin)}
        return Inputs(values, self.prices, self.prices_as_of, self.cloudfront_tiers, overridden)


def _value(entry: Any, where: str) -> float:
    if not isinstance(entry, dict) or "value" not in entry or not entry.get("source"):
        raise InputError(f"{where}: expected {{value, unit, source}}")
    value = entry["value"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{where}: value is not a number")
    return float(value)


def load_inputs(path: Path = INPUTS_PATH) -> Inputs:
    raw = json.loads(path.read_text())
    values: dict[str, float] = {}
    for section in SECTIONS:
        for key, entry in raw[section].items():
            if key in values:
                raise InputError(f"{key} appears twice")
            values[key] = _value(entry, f"{section}.{key}")
    prices: dict[str, dict[str, float]] = {}
    for region in REGIONS:
        table = raw["prices"][region]
        prices[region] = {k: _value(v, f"prices.{region}.{k}") for k, v in table.items()}
    tiers = []
    for i, entry in enumerate(raw["prices"]["cloudfront_gb_tiers"]):
        price = _value(entry, f"prices.cloudfront_gb_tiers[{i}]")
        tiers.append((float(entry.get("up_to_tb", math.inf)), price))
    return Inputs(values, prices, str(raw["prices"]["as_of"]), tuple(tiers))


def tiered(gb: float, tiers: Sequence[tuple[float, float]]) -> float:
    """USD for ``gb`` a month at volume tiers ((up to TB, USD per GB), ...), the last unbounded."""
    cost, below = 0.0, 0.0
    for up_to_tb, price in tiers:
        top = up_to_tb * 1000.0  # AWS's TB here are 1,000 GB
        if gb <= top:
            return cost + (gb - below) * price
        cost += (top - below) * price
        below = top
    raise InputError("the last CloudFront tier must have no up_to_tb")


def report_figures(report: Mapping[str, Any]) -> dict[str, float]:
    """The gateway's medians of a bench report, as inputs (only those the report measured)."""
    try:
        row = report["medians"]["moosic"]
    except (KeyError, TypeError):
        raise InputError("not a bench report: no medians.moosic") from None
    found: dict[str, float] = {}
    for key, label in REPORT_LABELS.items():
        value = row.get(label)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            found[key] = float(value)
    if not found:
        raise InputError("the bench report has none of the gateway's figures")
    return found


# -- the model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    """How many units of a tier one limit alone would need (fractional)."""

    limit: str
    units: float


@dataclass(frozen=True)
class Tier:
    count: int
    first_limit: str
    needs: list[Need]
    detail: dict[str, float]


def _ceil(x: float) -> int:
    # 3.0000000001 from float arithmetic is 3, not 4.
    return max(0, math.ceil(x - 1e-9))


def first_limit(needs: Sequence[Need], minimum: int, minimum_name: str) -> tuple[int, str]:
    """The count a tier needs (the largest need, at least ``minimum``) and the limit that sets it.

    The first of equal needs wins; the minimum wins only when every limit fits within it.
    """
    top: Need | None = None
    for need in needs:
        if top is None or need.units > top.units:
            top = need
    if top is None or _ceil(top.units) <= minimum:
        return minimum, minimum_name
    return _ceil(top.units), top.limit


def _tier(needs: list[Need], minimum: int, minimum_name: str, detail: dict[str, float]) -> Tier:
    count, limit = first_limit(needs, minimum, minimum_name)
    return Tier(count, limit, needs, detail)


def nodes_for_node_loss(connections: float, window_s: float, opens_per_node: float) -> int:
    """Fewest nodes n ≥ 2 whose n - 1 survivors open one lost node's share within the window.

    A draining or lost node's ``connections / n`` clients come back spread over the 4000
    close's retry window; the other ``n - 1`` nodes open them: ``c / n / w ≤ (n - 1) · r``,
    i.e. ``n (n - 1) ≥ c / (w · r)``.
    """
    k = connections / (window_s * opens_per_node)
    n = max(2, math.ceil((1 + math.sqrt(1 + 4 * k)) / 2))
    while n > 2 and (n - 1) * (n - 2) >= k:
        n -= 1
    while n * (n - 1) < k:
        n += 1
    return n


@dataclass(frozen=True)
class Load:
    """Peak rates of one scenario, per second unless named otherwise."""

    users: float
    online: float
    connections: float
    messages: float
    deliveries: float
    likes: float
    comments: float
    mark_reads: float
    history_pages: float
    feed_reads: float
    opens: float
    refreshes: float
    posts: float
    watch_seconds: float
    events: float


def load_for(v: Mapping[str, float], users: float) -> Load:
    online = users * v["peak_online_share"]
    per_hour = online / 3600.0
    connections = online * v["connections_per_online_user"]
    messages = per_hour * v["msgs_per_user_hour"]
    return Load(
        users=users,
        online=online,
        connections=connections,
        messages=messages,
        deliveries=messages * v["recipients_per_msg"],
        likes=per_hour * v["likes_per_user_hour"],
        comments=per_hour * v["comments_per_user_hour"],
        mark_reads=per_hour * v["mark_reads_per_user_hour"],
        history_pages=per_hour * v["history_pages_per_user_hour"],
        feed_reads=per_hour * v["feed_reads_per_user_hour"],
        opens=connections * v["opens_per_connection_hour"] / 3600.0,
        refreshes=online / v["access_token_ttl_s"],
        posts=per_hour * v["posts_per_user_hour"],
        watch_seconds=per_hour * v["video_minutes_per_user_hour"] * 60.0,
        events=per_hour * v["events_per_user_hour"],
    )


def derived(v: Mapping[str, float]) -> dict[str, float]:
    """Per-unit costs worked out from the measured figures (shown in the docs and the JSON)."""
    publish_us = v["s4_server_cpu_pct"] / 100.0 * 1e6 / v["s4_messages_per_s"]
    publish_overhead_us = publish_us - v["s4_deliveries_per_message"] * v["cpu_us_per_delivery"]
    s1_publishes = v["s1_deliveries_per_s"] / v["s1_subscribers"]
    redis_us_per_op = (
        v["s1_redis_cpu_pct"] / 100.0 * 1e6 / (s1_publishes * v["redis_ops_per_publish"])
    )
    speed = v["core_speed_factor"]
    return {
        "publish_us": publish_us,
        "publish_overhead_us": publish_overhead_us,
        "other_op_us": publish_overhead_us * v["other_op_cost_vs_publish"],
        "open_us": 1e6 / v["opens_per_s"],
        "node_cpu_budget_us": v["processes_per_node"] * v["cpu_target_pct"] / 100.0 * 1e6 * speed,
        "opens_per_node_s": v["opens_per_s"] * v["processes_per_node"] * speed,
        "connections_per_node_memory": (
            (v["node_memory_gib"] * 1024.0 - v["node_reserved_mib"])
            * 1024.0
            / (v["idle_kib_per_connection"] * v["memory_factor_active"])
        ),
        "connections_per_node_fd": v["nofile"] - v["fd_reserve"] - v["fds_other"],
        "redis_us_per_op": redis_us_per_op,
        "redis_ops_per_shard_s": v["redis_cpu_target_pct"] / 100.0 * 1e6 / redis_us_per_op,
        "redis_bytes_per_shard": (
            v["redis_node_memory_gib"] * 2**30 * (1 - v["redis_reserved_memory_pct"] / 100.0)
        ),
        "retry_window_s": (v["retry_max_ms"] - v["retry_min_ms"]) / 1000.0,
    }


def gateway_tier(v: Mapping[str, float], d: Mapping[str, float], load: Load) -> Tier:
    other_ops = load.likes + load.comments + load.mark_reads + load.history_pages + load.feed_reads
    cpu_us = (
        load.deliveries * v["cpu_us_per_delivery"]
        + load.messages * d["publish_overhead_us"]
        + other_ops * d["other_op_us"]
        + load.opens * d["open_us"]
    )
    conns = load.connections
    needs = [
        Need("memory", conns / d["connections_per_node_memory"]),
        Need("file descriptors", conns / d["connections_per_node_fd"]),
        Need("CPU", cpu_us / d["node_cpu_budget_us"]),
        Need("reconnect storm (opens/s)", conns / v["storm_seconds"] / d["opens_per_node_s"]),
        Need(
            "node loss (opens/s)",
            float(nodes_for_node_loss(conns, d["retry_window_s"], d["opens_per_node_s"]))
            if conns > 0
            else 0.0,
        ),
    ]
    detail = {
        "cpu_us_per_s": cpu_us,
        "connections_per_node_memory": d["connections_per_node_memory"],
        "nodes_at_stack_connections_target": float(
            max(v["min_nodes"], _ceil(conns / v["connections_target"]))
        ),
    }
    return _tier(needs, int(v["min_nodes"]), "minimum (2 AZs)", detail)


def redis_tier(v: Mapping[str, float], d: Mapping[str, float], load: Load, nodes: int) -> Tier:
    other_ops = load.comments + load.mark_reads + load.history_pages + load.feed_reads
    ops = (
        load.messages * v["redis_ops_per_publish"]
        + load.likes * v["redis_ops_per_like"]
        + load.opens * v["redis_ops_per_open"]
        + other_ops * v["redis_ops_per_other_op"]
        + nodes * 1.0  # each node's presence heartbeat and counts sweep, about one a second
    )
    window_bytes = (
        load.messages * v["recovery_ttl_s"] * v["message_item_bytes"] * v["redis_memory_overhead"]
    )
    memory = window_bytes + load.online * v["redis_bytes_per_online_user"]
    needs = [
        Need("ops/s (CPU)", ops / d["redis_ops_per_shard_s"]),
        Need("memory", memory / d["redis_bytes_per_shard"]),
    ]
    return _tier(needs, 1, "minimum (1 shard)", {"ops_per_s": ops, "memory_bytes": memory})


def dynamodb_units(v: Mapping[str, float], load: Load) -> dict[str, dict[str, float]]:
    """Peak WRU/s and RRU/s per table."""
    miss = 1.0 - v["dax_hit_ratio"]
    head_wru = 2.0  # the channel head is one of the append's 4 transactional items (2 WRU each)
    units = {t: {"wru": 0.0, "rru": 0.0} for t in TABLES}
    units["messages"]["wru"] = load.messages * (v["append_wru_with_client_id"] - head_wru)
    units["messages"]["rru"] = load.history_pages * v["history_page_rru"] * miss
    units["channels"]["wru"] = load.messages * head_wru
    units["channels"]["rru"] = (
        load.mark_reads * v["mark_read_rru"]
        + load.history_pages * v["history_head_rru"]
        + load.opens * v["subscriptions_per_connection"] * v["position_rru"]
    )
    units["groups"]["wru"] = (
        load.messages * v["dm_group_share"] * v["append_dm_group_extra_wru"]
        + load.mark_reads * v["mark_read_wru"]
    )
    units["refresh_tokens"]["wru"] = load.refreshes * (v["refresh_use_wru"] + v["refresh_add_wru"])
    units["refresh_tokens"]["rru"] = load.refreshes * v["refresh_use_rru"]
    units["videos"]["wru"] = (
        load.likes * v["like_wru"]
        + load.comments * v["comment_wru"]
        + (load.likes + load.comments) * v["flush_share"] * v["counts_flush_wru"]
    )
    units["follows"]["wru"] = load.posts * (
        v["post_wru"] + v["followers_per_post"] * v["feed_item_wru"]
    )
    units["follows"]["rru"] = load.feed_reads * v["feed_read_rru"]
    return units


def dynamodb_tier(v: Mapping[str, float], units: Mapping[str, Mapping[str, float]]) -> Tier:
    quota = v["dynamodb_table_quota_units"]
    needs = [
        Need(f"{table} {kind.upper()} (table quota)", u[kind] / quota)
        for table, u in units.items()
        for kind in ("wru", "rru")
    ]
    top = max(needs, key=lambda n: n.units)
    detail = {
        "wru_per_s": sum(u["wru"] for u in units.values()),
        "rru_per_s": sum(u["rru"] for u in units.values()),
        "busiest_share_of_quota": top.units,
    }
    # The count is the number of tables past their default quota (0: none needs an increase).
    over = sum(1 for u in units.values() if max(u["wru"], u["rru"]) > quota)
    return Tier(over, top.limit, needs, detail)


def dax_tier(v: Mapping[str, float], load: Load) -> Tier:
    requests = load.history_pages * v["dax_requests_per_page"]
    needs = [Need("cached reads/s", requests / v["dax_node_requests_per_s"])]
    tier = _tier(
        needs, int(v["dax_min_nodes"]), "minimum (3 for the AZs)", {"requests_per_s": requests}
    )
    if tier.count > v["dax_max_nodes"]:
        return Tier(tier.count, "past 11 nodes: a second cluster", tier.needs, tier.detail)
    return tier


def cloudfront_tier(v: Mapping[str, float], load: Load) -> Tier:
    video_bps = load.watch_seconds * v["video_kbps"] * 1000.0
    chat_bps = load.deliveries * v["frame_bytes"] * 8.0
    gbps = (video_bps + chat_bps) / 1e9
    requests = load.watch_seconds / v["segment_seconds"] * (1.0 + v["playlist_share"]) + load.opens
    needs = [
        Need("bandwidth (Gbit/s quota)", gbps / v["cloudfront_gbps_per_distribution"]),
        Need("requests/s quota", requests / v["cloudfront_rps_per_distribution"]),
    ]
    detail = {"gbps": gbps, "requests_per_s": requests}
    return _tier(needs, 1, "one distribution", detail)


def kinesis_tier(v: Mapping[str, float], load: Load) -> Tier:
    share = v["kinesis_target_pct"] / 100.0
    byte_rate = load.events * v["event_bytes"]
    needs = [
        Need("bytes/s", byte_rate / (v["kinesis_shard_bytes_per_s"] * share)),
        Need("records/s", load.events / (v["kinesis_shard_records_per_s"] * share)),
    ]
    return _tier(
        needs, 1, "minimum (1 shard)", {"records_per_s": load.events, "bytes_per_s": byte_rate}
    )


def monthly_cost(
    inputs: Inputs,
    p: Mapping[str, float],
    load: Load,
    tiers: Mapping[str, Tier],
    units: Mapping[str, Mapping[str, float]],
) -> dict[str, float]:
    """USD a month. Instances at the peak count all month (no scale-in credited); request-priced
    services at the average rate (peak ÷ peak_to_average)."""
    v = inputs.values
    hours = v["hours_per_month"]
    avg_seconds = hours * 3600.0 / v["peak_to_average"]  # peak rate x this = a month's volume
    wru = sum(u["wru"] for u in units.values())
    rru = sum(u["rru"] for u in units.values())
    cf = tiers["cloudfront"].detail
    gb_month = cf["gbps"] / 8.0 * avg_seconds  # Gbit/s → GB/s x seconds
    replicas = 1.0 + v["redis_replicas_per_shard"]
    records = load.events * avg_seconds
    put_units = records * max(1.0, math.ceil(v["event_bytes"] / v["kinesis_put_unit_bytes"]))
    lcu = max(
        load.connections / v["peak_to_average"] / v["alb_lcu_active_connections"],
        load.opens / v["peak_to_average"] / v["alb_lcu_new_connections_per_s"],
    )
    cost = {
        "gateway nodes": tiers["gateway"].count * p["ec2_node_hour"] * hours,
        "Redis": tiers["redis"].count * replicas * p["redis_node_hour"] * hours,
        "DynamoDB": (wru * p["dynamodb_wru_million"] + rru * p["dynamodb_rru_million"])
        / 1e6
        * avg_seconds,
        "DAX": tiers["dax"].count * p["dax_node_hour"] * hours,
        "CloudFront": tiered(gb_month, inputs.cloudfront_tiers)
        + cf["requests_per_s"] * avg_seconds / 1e4 * p["cloudfront_10k_requests"],
        "Kinesis": tiers["kinesis"].count * p["kinesis_shard_hour"] * hours
        + put_units / 1e6 * p["kinesis_put_units_million"],
        "ALB": (p["alb_hour"] + lcu * p["alb_lcu_hour"]) * hours,
        "NAT": v["nat_gateways"] * p["nat_hour"] * hours,
    }
    cost["total"] = sum(cost.values())
    return cost


@dataclass(frozen=True)
class Scenario:
    name: str
    multiplier: float
    load: Load
    tiers: dict[str, Tier]
    dynamodb: dict[str, dict[str, float]]
    cost: dict[str, dict[str, float]]


def scenario(inputs: Inputs, name: str, users: float, multiplier: float) -> Scenario:
    v = inputs.values
    d = derived(v)
    load = load_for(v, users * multiplier)
    gateway = gateway_tier(v, d, load)
    units = dynamodb_units(v, load)
    tiers = {
        "gateway": gateway,
        "redis": redis_tier(v, d, load, gateway.count),
        "dynamodb": dynamodb_tier(v, units),
        "dax": dax_tier(v, load),
        "cloudfront": cloudfront_tier(v, load),
        "kinesis": kinesis_tier(v, load),
    }
    cost = {r: monthly_cost(inputs, inputs.prices[r], load, tiers, units) for r in REGIONS}
    return Scenario(name, multiplier, load, tiers, units, cost)


def plan(
    inputs: Inputs, users: float, scenarios: Sequence[tuple[str, float]] = SCENARIOS
) -> list[Scenario]:
    if users <= 0:
        raise InputError("--users must be positive")
    return [scenario(inputs, name, users, m) for name, m in scenarios]


# -- regions (issue 20): each region's users, and the traffic between regions ---------------

HOME_REGION = ("kh", "ap-southeast-1")
"""The original region: Cambodia's users, and whoever no other region takes."""
OTHER_REGIONS: tuple[tuple[str, str, str], ...] = (
    # (name, AWS region its users are served from, share input)
    ("in", "ap-south-1", "region_share_in"),
    ("us", "us-east-1", "region_share_us"),
    ("cn", "ap-southeast-1", "region_share_cn"),
    ("au", "ap-southeast-2", "region_share_au"),
)
PRICED_AS = {"ap-south-1": "ap-southeast-1", "ap-southeast-2": "ap-southeast-1"}
"""Regions without prices in the inputs are priced as the nearest one that has them."""


@dataclass(frozen=True)
class RegionLink:
    """One region's cross-region traffic at its peak, caused by its own users' publishes."""

    cross_messages: float
    """messages/s published in this region in a channel with members in another region"""
    forwarded: float
    """publishes/s this region forwards to their channel's home"""
    relayed: float
    """events/s relayed between regions for this region's cross-region messages"""
    mbps: float
    """megabits/s on the links: forwarded publishes plus relayed events"""
    gb_month: float
    cost_month: float
    """USD a month of inter-region data transfer, at this region's rate"""


@dataclass(frozen=True)
class RegionPlan:
    name: str
    aws_region: str
    users: float
    scenario: Scenario
    link: RegionLink


def region_users(v: Mapping[str, float], users: float) -> list[tuple[str, str, float]]:
    """(name, AWS region, users) per deployed region; the home region keeps what the others do
    not take, and the users of a share served from the home's AWS region (China's)."""
    shares = [(name, aws, v[key]) for name, aws, key in OTHER_REGIONS]
    if any(share < 0 for _n, _a, share in shares):
        raise InputError("region shares must not be negative")
    home_share = 1.0 - sum(share for _n, aws, share in shares if aws != HOME_REGION[1])
    if home_share <= 0:
        raise InputError("the other regions' shares leave no users to the home region")
    return [(HOME_REGION[0], HOME_REGION[1], users * home_share)] + [
        (name, aws, users * share)
        for name, aws, share in shares
        if share > 0 and aws != HOME_REGION[1]
    ]


def region_link(v: Mapping[str, float], price: Mapping[str, float], load: Load) -> RegionLink:
    """Each cross-region message is forwarded once when it is published outside its home
    (``forward_share``) and relayed once to each other region that follows it
    (``relay_regions_per_message``); a relayed event is sent by the home region, counted here,
    with the region that published it (over all regions the two countings agree)."""
    cross = load.messages * v["cross_region_message_share"]
    forwarded = cross * v["forward_share"]
    relayed = cross * v["relay_regions_per_message"]
    bytes_per_s = forwarded * v["link_forward_bytes"] + relayed * v["link_event_bytes"]
    avg_seconds = v["hours_per_month"] * 3600.0 / v["peak_to_average"]
    gb_month = bytes_per_s * avg_seconds / 1e9
    return RegionLink(
        cross_messages=cross,
        forwarded=forwarded,
        relayed=relayed,
        mbps=bytes_per_s * 8 / 1e6,
        gb_month=gb_month,
        cost_month=gb_month * price["inter_region_gb"],
    )


def region_plan(inputs: Inputs, users: float, multiplier: float = 1.0) -> list[RegionPlan]:
    """Every region sized on its own users (its own nodes, Redis, tables, DAX), plus its link."""
    if users <= 0:
        raise InputError("--users must be positive")
    v = inputs.values
    plans = []
    for name, aws, region_count in region_users(v, users * multiplier):
        one = scenario(inputs, name, region_count, 1.0)
        price = inputs.prices[PRICED_AS.get(aws, aws)]
        plans.append(RegionPlan(name, aws, region_count, one, region_link(v, price, one.load)))
    return plans


def regions_markdown(inputs: Inputs, users: float, plans: Sequence[RegionPlan]) -> str:
    rows = [
        (
            f"Per region, {_n(users)} users (prices as of {inputs.prices_as_of}; "
            "ap-south-1 and ap-southeast-2 priced as ap-southeast-1; China's users in kh):"
        ),
        "",
        (
            "| region | AWS region | users | gateway nodes | Redis shards | DAX nodes "
            "| cross-region msgs/s | forwarded/s | relayed/s | link Mbit/s | link GB/month "
            "| link USD/month | region USD/month |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in plans:
        tiers, link = p.scenario.tiers, p.link
        price_region = PRICED_AS.get(p.aws_region, p.aws_region)
        total = p.scenario.cost[price_region]["total"] if price_region in REGIONS else math.nan
        rows.append(
            f"| {p.name} | {p.aws_region} | {_n(p.users)} | {tiers['gateway'].count} "
            f"| {tiers['redis'].count} | {tiers['dax'].count} | {_n(link.cross_messages)} "
            f"| {_n(link.forwarded)} | {_n(link.relayed)} | {link.mbps:.2f} "
            f"| {_n(link.gb_month)} | ${link.cost_month:,.2f} | {_usd(total + link.cost_month)} |"
        )
    return "\n".join(rows) + "\n"


# -- output ---------------------------------------------------------------------------------


def _n(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _usd(x: float) -> str:
    return f"${x:,.0f}"


def markdown(inputs: Inputs, users: float, scenarios: Sequence[Scenario]) -> str:
    v = inputs.values
    head = ["", *(f"{s.name}" for s in scenarios)]

    def row(label: str, cells: list[str]) -> str:
        return "| " + " | ".join([label, *cells]) + " |"

    def tier_cell(t: Tier) -> str:
        return f"{t.count} ({t.first_limit})"

    lines = [
        f"## Capacity for {users:,.0f} users",
        "",
        (
            f"Peak online share {v['peak_online_share']:.0%}, {_n(v['msgs_per_user_hour'])}"
            f" messages, {_n(v['likes_per_user_hour'])} likes,"
            f" {_n(v['video_minutes_per_user_hour'])} video minutes and"
            f" {_n(v['events_per_user_hour'])} clickstream events per online user-hour;"
            f" prices of {inputs.prices_as_of}."
        ),
        "",
        row(head[0], head[1:]),
        "|" + "---|" * len(head),
        row("users", [f"{s.load.users:,.0f}" for s in scenarios]),
        row("connections at peak", [f"{s.load.connections:,.0f}" for s in scenarios]),
        row(
            "messages/s · deliveries/s",
            [f"{_n(s.load.messages)} · {_n(s.load.deliveries)}" for s in scenarios],
        ),
        row("gateway nodes (c7g.large)", [tier_cell(s.tiers["gateway"]) for s in scenarios]),
        row(
            "… as the stack scales (ConnectionsPerNode)",
            [
                f"{s.tiers['gateway'].detail['nodes_at_stack_connections_target']:.0f}"
                for s in scenarios
            ],
        ),
        row(
            "Redis shards (cache.r7g.large + 1 replica)",
            [tier_cell(s.tiers["redis"]) for s in scenarios],
        ),
        row(
            "DynamoDB WRU/s · RRU/s at peak",
            [
                f"{_n(s.tiers['dynamodb'].detail['wru_per_s'])} · "
                f"{_n(s.tiers['dynamodb'].detail['rru_per_s'])}"
                for s in scenarios
            ],
        ),
        row(
            "DynamoDB busiest table (share of its quota)",
            [
                f"{s.tiers['dynamodb'].first_limit}: "
                f"{s.tiers['dynamodb'].detail['busiest_share_of_quota']:.1%}"
                for s in scenarios
            ],
        ),
        row("DAX nodes (dax.r5.large)", [tier_cell(s.tiers["dax"]) for s in scenarios]),
        row(
            "CloudFront distributions (Gbit/s · req/s)",
            [
                f"{tier_cell(s.tiers['cloudfront'])}: {_n(s.tiers['cloudfront'].detail['gbps'])}"
                f" · {s.tiers['cloudfront'].detail['requests_per_s']:,.0f}"
                for s in scenarios
            ],
        ),
        row("Kinesis shards", [tier_cell(s.tiers["kinesis"]) for s in scenarios]),
        *(
            row(f"**monthly cost, {r}**", [f"**{_usd(s.cost[r]['total'])}**" for s in scenarios])
            for r in REGIONS
        ),
        *(
            row(
                f"… of which not CloudFront, {r}",
                [_usd(s.cost[r]["total"] - s.cost[r]["CloudFront"]) for s in scenarios],
            )
            for r in REGIONS
        ),
        "",
        "### DynamoDB at peak, per table (WRU/s · RRU/s)",
        "",
        row("table", head[1:]),
        "|" + "---|" * len(head),
    ]
    for table in TABLES:
        cells = [
            f"{_n(s.dynamodb[table]['wru'])} · {_n(s.dynamodb[table]['rru'])}" for s in scenarios
        ]
        lines.append(row(table, cells))
    for region in REGIONS:
        lines += ["", f"### Monthly cost, {region} (USD)", "", row("", head[1:])]
        lines.append("|" + "---|" * len(head))
        for item in scenarios[0].cost[region]:
            lines.append(row(item, [_usd(s.cost[region][item]) for s in scenarios]))
    if inputs.overridden:
        lines += ["", "Inputs not from `infra/capacity_inputs.json`:"]
        lines += [f"- `{k}` = {inputs.values[k]:g} ({o})" for k, o in inputs.overridden.items()]
    return "\n".join(lines) + "\n"


def as_json(inputs: Inputs, users: float, scenarios: Sequence[Scenario]) -> dict[str, Any]:
    return {
        "users": users,
        "prices_as_of": inputs.prices_as_of,
        "derived": derived(inputs.values),
        "overridden": inputs.overridden,
        "scenarios": [asdict(s) for s in scenarios],
    }


# -- command line ---------------------------------------------------------------------------

# Options with a name of their own (any input can also be given with --set KEY=VALUE).
NAMED_OPTIONS = (
    "peak_online_share",
    "msgs_per_user_hour",
    "recipients_per_msg",
    "likes_per_user_hour",
    "video_minutes_per_user_hour",
    "events_per_user_hour",
    "opens_per_connection_hour",
    "storm_seconds",
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m infra.capacity", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--users", type=float, required=True, help="today's users")
    for name in NAMED_OPTIONS:
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=None)
    parser.add_argument("--inputs", type=Path, default=INPUTS_PATH)
    parser.add_argument("--report", type=Path, help="bench report JSON (loadtest/reports/)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override any input"
    )
    parser.add_argument("--json", action="store_true", help="JSON instead of Markdown")
    parser.add_argument(
        "--regions", action="store_true", help="per region (docs/regions.md) instead of tiers"
    )
    return parser.parse_args(argv)


def build_inputs(args: argparse.Namespace) -> Inputs:
    inputs = load_inputs(args.inputs)
    if args.report is not None:
        inputs = inputs.replace(
            report_figures(json.loads(args.report.read_text())), str(args.report)
        )
    named = {n: getattr(args, n) for n in NAMED_OPTIONS if getattr(args, n) is not None}
    if named:
        inputs = inputs.replace(named, "command line")
    sets: dict[str, float] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--set {item}: expected KEY=VALUE")
        try:
            sets[key.strip()] = float(value)
        except ValueError:
            raise InputError(f"--set {item}: not a number") from None
    if sets:
        inputs = inputs.replace(sets, "--set")
    return inputs


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        inputs = build_inputs(args)
        scenarios = plan(inputs, args.users)
        regions = region_plan(inputs, args.users) if args.regions else None
    except (InputError, OSError, json.JSONDecodeError) as exc:
        sys.stderr.write(f"infra.capacity: {exc}\n")
        return 2
    if regions is not None:
        if args.json:
            found = [asdict(r) for r in regions]
            sys.stdout.write(json.dumps(found, indent=2, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write(regions_markdown(inputs, args.users, regions))
        return 0
    if args.json:
        sys.stdout.write(
            json.dumps(as_json(inputs, args.users, scenarios), indent=2, ensure_ascii=False) + "\n"
        )
    else:
        sys.stdout.write(markdown(inputs, args.users, scenarios))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
