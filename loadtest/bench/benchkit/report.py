"""Headline figures: medians over runs, ratios of the gateway to each baseline, JSON + markdown."""

import json
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .measure import CLIENT_BOUND_PCT

GATEWAY = "moosic"


@dataclass(frozen=True)
class Metric:
    """One headline figure, found at `path` in a target's results of one run."""

    label: str
    better: str
    path: tuple[str, ...]
    client_cpu_label: str | None = None
    """When set, the figure is a lower bound where that load-generator CPU share is saturated."""


def _fanout_metrics(scenario: str, name: str) -> list[Metric]:
    return [
        Metric(
            f"{name}: max deliveries/s (p99 ≤ limit)",
            "higher",
            (scenario, "max", "deliveries_per_s"),
            f"{name}: load generator CPU % at max",
        ),
        Metric(f"{name}: p50 at max, ms", "lower", (scenario, "max", "p50_ms")),
        Metric(f"{name}: p99 at max, ms", "lower", (scenario, "max", "p99_ms")),
        Metric(f"{name}: load generator CPU % at max", "info", (scenario, "max", "client_cpu_pct")),
        Metric(
            f"{name}: server CPU µs per delivery at fixed rate",
            "lower",
            (scenario, "fixed", "server_cpu_us_per_delivery"),
        ),
        Metric(
            f"{name}: deliveries/s at fixed rate", "higher", (scenario, "fixed", "deliveries_per_s")
        ),
        Metric(f"{name}: p50 at fixed rate, ms", "lower", (scenario, "fixed", "p50_ms")),
        Metric(f"{name}: p99 at fixed rate, ms", "lower", (scenario, "fixed", "p99_ms")),
        Metric(f"{name}: Redis CPU % at fixed rate", "lower", (scenario, "fixed", "redis_cpu_pct")),
        Metric(
            f"{name}: load generator CPU % at fixed rate",
            "info",
            (scenario, "fixed", "client_cpu_pct"),
        ),
    ]


METRICS: list[Metric] = [
    *_fanout_metrics("s1", "S1 fan-out"),
    *_fanout_metrics("s2", "S2 cross-node"),
    Metric("S3 idle: RSS KiB per connection", "lower", ("s3", "kib_per_connection")),
    Metric("S3 idle: connections opened/s", "higher", ("s3", "opens_per_s")),
    Metric(
        "S3 idle: load generator CPU % while opening",
        "info",
        ("s3", "client_cpu_pct_while_opening"),
    ),
    Metric("S4 chat: server CPU %", "lower", ("s4", "server_cpu_pct")),
    Metric("S4 chat: p50, ms", "lower", ("s4", "p50_ms")),
    Metric("S4 chat: p99, ms", "lower", ("s4", "p99_ms")),
    Metric("S4 chat: delivered to peer, %", "higher", ("s4", "delivered_pct")),
    Metric("S4 chat: stored (acknowledged), %", "higher", ("s4", "stored_pct")),
    Metric("S4 chat: load generator CPU %", "info", ("s4", "client_cpu_pct")),
]


def _lookup(results: dict[str, Any], path: tuple[str, ...]) -> float | None:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def medians(runs: list[dict[str, dict[str, Any]]], targets: list[str]) -> dict[str, dict[str, Any]]:
    """Median of each headline figure over the runs, per target (None where never measured)."""
    out: dict[str, dict[str, Any]] = {}
    for target in targets:
        row: dict[str, Any] = {}
        for metric in METRICS:
            values = [
                v for run in runs if (v := _lookup(run.get(target, {}), metric.path)) is not None
            ]
            row[metric.label] = statistics.median(values) if values else None
        out[target] = row
    return out


def _client_windows(node: Any) -> Iterator[float]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key.startswith("client_cpu_pct") and isinstance(value, int | float):
                yield float(value)
            else:
                yield from _client_windows(value)
    elif isinstance(node, list):
        for item in node:
            yield from _client_windows(item)


def peak_client_cpu(runs: list[dict[str, dict[str, Any]]]) -> float | None:
    """Highest load-generator CPU share seen in any measurement window."""
    return max(_client_windows(runs), default=None)


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 10_000:
        return f"{value / 1000:,.0f}k"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(metric: Metric, row: dict[str, Any]) -> str:
    text = _fmt(row[metric.label])
    client = row.get(metric.client_cpu_label or "")
    if client is not None and client >= CLIENT_BOUND_PCT and row[metric.label] is not None:
        return f"≥{text}"
    return text


def _ratio(mine: float | None, theirs: float | None) -> str:
    if mine is None or theirs is None or theirs == 0:
        return "n/a"
    return f"{mine / theirs:.2f}x"


def markdown(report: dict[str, Any]) -> str:
    """The one-screen summary: medians per target and the gateway's ratio to each baseline."""
    names = list(report["targets"])
    table = report["medians"]
    baselines = [n for n in names if n != GATEWAY] if GATEWAY in names else []
    head = ["figure", "better", *names, *(f"{GATEWAY} ÷ {b}" for b in baselines)]
    lines = [
        (
            f"## Bench results ({report['meta']['mode']} mode, {report['meta']['runs']} run(s), "
            f"medians), {report['meta']['started_utc']}"
        ),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for metric in METRICS:
        values = [table[n][metric.label] for n in names]
        if all(v is None for v in values):
            continue
        cells = [_cell(metric, table[n]) for n in names]
        ratios = [_ratio(table[GATEWAY][metric.label], table[b][metric.label]) for b in baselines]
        lines.append("| " + " | ".join([metric.label, metric.better, *cells, *ratios]) + " |")
    meta = report["meta"]
    lines += [
        "",
        (
            f"Fixed rate: {meta['plan']['fixed_offered']:,} deliveries/s offered; p99 limit "
            f"{meta['plan']['p99_limit_ms']:.0f} ms; {meta['plan']['fanout_subscribers']:,} "
            f"subscribers. Peak load generator CPU in any window: "
            f"{_fmt(report['peak_client_cpu_pct'])} % of its core."
        ),
        "",
        (
            f"≥: the load generator's core was ≥{CLIENT_BOUND_PCT:.0f}% busy at that step, so the "
            "figure is a lower bound. A target whose deliveries/s at the fixed rate fall short of "
            "the rate offered was saturated there: its CPU per delivery is then taken at its own "
            "maximum. Ratios are moosic ÷ baseline; read them with the 'better' column."
        ),
        "",
        "Targets:",
        *(f"- {name}: {desc}" for name, desc in report["targets"].items()),
    ]
    lines += ["", "Versions:", *_versions(meta["versions"])]
    if report["errors"]:
        lines += [
            "",
            "Errors:",
            *(f"- {e}" for e in report["errors"]),
            f"- server logs: `{meta['logs']}`",
        ]
    lines += ["", f"Command: `{meta['command']}`", f"JSON: `{meta['json']}`", ""]
    return "\n".join(lines)


def _versions(versions: dict[str, Any]) -> list[str]:
    out = []
    for part, value in versions.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items() if v is not None)
        out.append(f"- {part}: {value}")
    return out


def write(report: dict[str, Any], directory: Path, stem: str) -> tuple[Path, Path]:
    """Write the JSON and the markdown summary side by side."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / f"{stem}.json", directory / f"{stem}.md"
    report["meta"]["json"] = str(json_path)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown(report))
    return json_path, md_path
