"""One-screen summary of a load-test run, from the CSV files it wrote, with a PASS/FAIL verdict.

    python loadtest/summary.py loadtest/reports/locust-latest

Reads ``phases.csv`` and ``checks.csv`` (written by the locustfile) and locust's own
``locust_stats.csv`` / ``locust_failures.csv``. Exits 0 when the run passed, 1 when it did not,
2 when the files are missing. Plain Python, no locust: the app's tests import it.
"""

from __future__ import annotations

import csv
import os
import sys
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SURGE_P99_RATIO = 2.0
"""The surge's p99 may be at most this many times the baseline's."""

BUSY_MACHINE_PCT = 50.0
"""Other processes using more than this (% of one core) in the baseline or the surge make the
latency comparison unreliable: the summary says so."""

KINDS = (
    ("WS", "dm", "dm"),
    ("WS", "group", "group"),
    ("WS", "room", "room"),
    ("POLL", "room", "poll"),
    ("WS", "publish", "ws-pub"),
    ("REST", "publish", "rest-pub"),
    ("WS", "history", "ws-hist"),
    ("REST", "history", "rest-hist"),
)
"""(type, name after the phase, column title) of the per-kind p99 table."""


@dataclass(frozen=True)
class Check:
    title: str
    passed: bool
    detail: str


def number(value: object) -> float | None:
    """A CSV cell as a float; None when empty or not a number ("N/A")."""
    try:
        return float(str(value))
    except ValueError:
        return None


def read_rows(path: str) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_checks(path: str) -> dict[str, str]:
    return {row["key"]: row["value"] for row in read_rows(path)}


def judge(phases: Mapping[str, Mapping[str, str]], checks: Mapping[str, str]) -> list[Check]:
    """The verdict: the surge held its p99 with no failures; the storm lost nobody, nothing."""
    results = []
    base, surge = phases.get("baseline", {}), phases.get("surge", {})
    base_p99, surge_p99 = number(base.get("p99_ms", "")), number(surge.get("p99_ms", ""))
    failures = int(number(surge.get("failures", "")) or 0)
    if base_p99 is None or surge_p99 is None:
        results.append(Check("surge", False, "no latency samples in the baseline or the surge"))
    else:
        limit = SURGE_P99_RATIO * base_p99
        ok = surge_p99 <= limit and failures == 0
        detail = (
            f"p99 {surge_p99:g} ms vs baseline {base_p99:g} ms "
            f"(limit {limit:g} ms, x{surge_p99 / base_p99:.2f}), {failures} failures"
            if base_p99 > 0
            else f"p99 {surge_p99:g} ms vs baseline 0 ms, {failures} failures"
        )
        results.append(Check("surge", ok, detail))
    expected = int(number(checks.get("storm_expected", "")) or 0)
    back = int(number(checks.get("storm_back", "")) or 0)
    missed = int(number(checks.get("missed_total", "")) or 0)
    if expected == 0:
        results.append(Check("storm", False, "the storm did not run (no clients dropped)"))
    else:
        slowest = number(checks.get("storm_slowest_s", "")) or 0.0
        detail = f"{back}/{expected} clients back (slowest {slowest:g} s), {missed} offsets missed"
        results.append(Check("storm", back == expected and missed == 0, detail))
    return results


GATEWAY_COUNTERS = (
    "events_published",
    "deliveries",
    "ws_errors_sent",
    "ws_slow_consumer_closes",
    "broker_publish_failures",
    "gap_events_skipped",
    "longpolls_rejected",
    "rate_limited",
    "recoveries_from_window",
    "recoveries_from_store",
    "internal_errors",
)
"""Counters from the nodes' ``/metrics`` (scraped at the end) shown in the summary."""


def gateway_counters(texts: Iterable[str]) -> dict[str, float]:
    """Sum the ``moosic_*_total`` counters of every node's metrics text."""
    totals: dict[str, float] = {}
    for text in texts:
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if not name.startswith("moosic_") or not name.endswith("_total"):
                continue
            key = name.removeprefix("moosic_").removesuffix("_total")
            totals[key] = totals.get(key, 0.0) + (number(value) or 0.0)
    return totals


SLO_BUCKET = 'moosic_delivery_lag_seconds_bucket{le="0.25"}'
SLO_SHARE = 0.99
"""The delivery SLO (docs/operations.md): 99% of messages within 250 ms on every node."""


def delivery_slo(text: str) -> tuple[float, float] | None:
    """One node's (deliveries observed, share within 250 ms) from its ``/metrics`` text; None
    when it observed none."""
    within = total = None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == SLO_BUCKET:
            within = number(value)
        elif name == "moosic_delivery_lag_seconds_count":
            total = number(value)
    if not total or within is None:
        return None
    return total, within / total


def kind_p99(stats: Iterable[Mapping[str, str]]) -> dict[tuple[str, str], dict[str, str]]:
    """99th percentiles from locust's stats CSV, keyed by (phase, column title)."""
    titles = {(t, n): title for t, n, title in KINDS}
    table: dict[tuple[str, str], dict[str, str]] = {}
    for row in stats:
        phase, _, what = row.get("Name", "").partition(" ")
        title = titles.get((row.get("Type", ""), what))
        if title is None:
            continue
        count = int(number(row.get("Request Count", "0")) or 0)
        p99 = row.get("99%", "")
        table.setdefault((phase, title), {})["p99"] = p99 if count else ""
    return table


def other_cpu(row: Mapping[str, str]) -> float | None:
    """CPU the rest of the machine used during a phase: what may have disturbed the run."""
    machine = number(row.get("machine_cpu_pct", ""))
    if machine is None:
        return None
    ours = [number(row.get(f"{g}_cpu_pct", "")) for g in ("nodes", "redis", "locust")]
    return max(0.0, machine - sum(x for x in ours if x is not None))


def fmt(value: object, width: int, digits: int = 0) -> str:
    n = number(value)
    if n is None:
        return "-".rjust(width)
    return f"{n:.{digits}f}".rjust(width)


def phase_line(row: Mapping[str, str], label: str) -> str:
    start, end = number(row["start_s"]) or 0.0, number(row["end_s"]) or 0.0
    span = max(end - start, 1e-9)
    published = number(row["published"]) or 0.0
    delivered = number(row["delivered"]) or 0.0
    return (
        f"{label:<9}{f'{start:.0f}-{end:.0f}':>12}{fmt(row['users_max'], 7)}"
        f"{fmt(row['ws_connected_max'], 7)}{fmt(published / span, 8, 1)}"
        f"{fmt(delivered / span, 9, 1)}{fmt(row['requests'], 8)}{fmt(row['failures'], 7)}"
        f"{fmt(row['p50_ms'], 8, 1)}{fmt(row['p95_ms'], 8, 1)}{fmt(row['p99_ms'], 8, 1)}"
        f"{fmt(row['max_ms'], 8, 0)}"
    )


def render(directory: str) -> tuple[str, bool]:
    all_rows = read_rows(os.path.join(directory, "phases.csv"))
    # Rows named "<phase>-<part>" are windows inside a phase (the surge's ramp and hold).
    phase_rows = [row for row in all_rows if "-" not in row["phase"]]
    parts = [row for row in all_rows if "-" in row["phase"]]
    checks = read_checks(os.path.join(directory, "checks.csv"))
    stats_path = os.path.join(directory, "locust_stats.csv")
    stats = read_rows(stats_path) if os.path.exists(stats_path) else []
    failures_path = os.path.join(directory, "locust_failures.csv")
    failures = read_rows(failures_path) if os.path.exists(failures_path) else []
    phases = {row["phase"]: row for row in phase_rows}

    out = []
    out.append(
        f"Moosic Gateway load test: {checks.get('nodes', '?')} nodes + Redis on loopback, "
        f"{checks.get('duration_s', '?')} s, baseline {checks.get('baseline_users', '?')} users, "
        f"surge {checks.get('surge_users', '?')}"
    )
    out.append("")
    out.append(
        f"{'phase':<9}{'seconds':>12}{'users':>7}{'ws up':>7}{'msg/s':>8}{'deliv/s':>9}"
        f"{'reqs':>8}{'fails':>7}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'max ms':>8}"
    )
    for row in phase_rows:
        out.append(phase_line(row, row["phase"]))
        for part in parts:
            if part["phase"].startswith(row["phase"] + "-"):
                out.append(phase_line(part, "  " + part["phase"].split("-", 1)[1]))
    out.append(
        "  msg/s: messages published and stored; deliv/s: pushes and long-poll arrivals timed"
    )
    out.append("  p50-max: every message-path latency; ramp/hold: the surge's jump and steady part")
    out.append("")
    out.append("CPU, % of one core " + "".join(f"{r['phase']:>10}" for r in phase_rows))
    labels = {"nodes": "gateway nodes", "redis": "redis", "locust": "locust (client)"}
    for group, label in labels.items():
        cells = "".join(fmt(r.get(f"{group}_cpu_pct", ""), 10) for r in phase_rows)
        out.append(f"  {label:<17}{cells}")
    cells = "".join(fmt(other_cpu(r), 10) for r in phase_rows)
    out.append(f"  {'other processes':<17}{cells}   (noise: the machine is shared)")
    table = kind_p99(stats)
    if table:
        out.append("")
        titles = [title for _t, _n, title in KINDS]
        out.append("p99 ms by kind " + "".join(f"{t:>10}" for t in titles))
        for row in phase_rows:
            cells = "".join(
                fmt(table.get((row["phase"], t), {}).get("p99", ""), 10) for t in titles
            )
            out.append(f"  {row['phase']:<13}{cells}")
    out.append("")
    if checks.get("storm_expected"):
        out.append(
            f"storm: {checks.get('storm_back')}/{checks.get('storm_expected')} WebSocket clients "
            f"back within {checks.get('storm_slowest_s')} s of the drop; "
            f"caught up with '{checks.get('storm_recovery') or 'history'}': "
            f"{checks.get('storm_replayed') or 0} events replayed, "
            f"{checks.get('storm_backfilled')} read from history"
            + (
                f" (not recovered: {checks['storm_not_recovered']})"
                if checks.get("storm_not_recovered")
                else ""
            )
        )
        out.append(
            f"whole run: {checks.get('missed_total')} offsets missed, "
            f"{checks.get('duplicates_total') or 0} pushed twice"
        )
    texts = []
    for name in sorted(os.listdir(directory)):
        if name.startswith("metrics-node") and name.endswith(".txt"):
            with open(os.path.join(directory, name)) as f:
                texts.append(f.read())
    counters = gateway_counters(texts)
    slo = [delivery_slo(text) for text in texts]
    if any(s is not None for s in slo):
        nodes = [
            f"node{n} {share:.2%} of {total:,.0f}"
            for n, s in enumerate(slo, 1)
            if s is not None
            for total, share in [s]
        ]
        met = all(s is None or s[1] >= SLO_SHARE for s in slo)
        out.append(
            f"delivery SLO (99% within 250 ms on every node, not in the verdict): "
            f"{', '.join(nodes)}: {'met' if met else 'MISSED'}"
        )
    if counters:
        shown = ", ".join(f"{c} {counters[c]:g}" for c in GATEWAY_COUNTERS if c in counters)
        out.extend(
            textwrap.wrap(f"gateway counters (all nodes): {shown}", 100, subsequent_indent="  ")
        )
    failed = [f for f in failures if int(number(f.get("Occurrences", "0")) or 0) > 0]
    if failed:
        failed.sort(key=lambda f: -(number(f.get("Occurrences", "0")) or 0))
        out.append(f"failures ({len(failed)} kinds, top 5):")
        for f in failed[:5]:
            error = f.get("Error", "")[:80]
            out.append(f"  {f.get('Occurrences'):>6}  {f.get('Method')} {f.get('Name')}: {error}")
    else:
        out.append("failures: none")
    out.append("")
    busy = {
        name: other
        for name in ("baseline", "surge")
        if (other := other_cpu(phases.get(name, {}))) is not None and other > BUSY_MACHINE_PCT
    }
    if busy:
        shown = ", ".join(f"{name} {pct:.0f}%" for name, pct in busy.items())
        out.append(
            f"WARNING: other processes kept the machine busy ({shown} of a core): latencies "
            "are noisy; rerun on a quiet machine before trusting the p99 ratio"
        )
    results = judge(phases, checks)
    for check in results:
        out.append(f"{'PASS' if check.passed else 'FAIL'}  {check.title}: {check.detail}")
    passed = all(c.passed for c in results)
    out.append(
        f"{'PASS' if passed else 'FAIL'}: surge p99 within {SURGE_P99_RATIO:g}x baseline with "
        "zero failures; every client back after the storm with nothing missed"
    )
    return "\n".join(out), passed


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[0])
        return 2
    try:
        text, passed = render(argv[1])
    except FileNotFoundError as exc:
        print(f"summary: {exc}")
        return 2
    print(text)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
