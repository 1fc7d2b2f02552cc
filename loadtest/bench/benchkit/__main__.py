"""Command line: python -m benchkit [--quick] [--targets ...] [--scenarios ...]."""

import argparse
import asyncio
import os
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import uvloop

from . import report, versions
from .chat import chat
from .fanout import fanout
from .idle import idle
from .plan import Layout, Plan
from .targets import TARGETS, Context, Target, moosic_available

Scenario = Callable[[Target, Context], Awaitable[dict[str, Any]]]


async def _s1(target: Target, ctx: Context) -> dict[str, Any]:
    return await fanout(target, ctx, nodes=1)


async def _s2(target: Target, ctx: Context) -> dict[str, Any]:
    return await fanout(target, ctx, nodes=2)


SCENARIOS: dict[str, Scenario] = {"s1": _s1, "s2": _s2, "s3": idle, "s4": chat}
TIME_LIMIT_S = {"quick": 20 * 60, "full": 75 * 60}


def _log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _one_line(scenario: str, result: dict[str, Any]) -> str:
    if "error" in result:
        return f"ERROR {result['error']}"
    if scenario in ("s1", "s2"):
        best, fixed = result["max"], result["fixed"]
        return (
            f"max {best['deliveries_per_s']:,.0f}/s p99 {best['p99_ms']} ms; "
            f"@{fixed['offered_per_s']:,}/s: {fixed['server_cpu_us_per_delivery']} µs/delivery,"
            f" client {fixed['client_cpu_pct']:.0f}%"
        )
    if scenario == "s3":
        return (
            f"{result['opened']:,} open, {result['opens_per_s']:,.0f}/s, "
            f"{result['kib_per_connection']} KiB/conn"
        )
    return (
        f"server {result['server_cpu_pct']:.1f}% p50 {result['p50_ms']} ms "
        f"p99 {result['p99_ms']} ms delivered {result['delivered_pct']}%"
    )


async def _run_all(
    ctx: Context,
    targets: list[Target],
    scenarios: list[str],
    runs: list[dict[str, dict[str, Any]]],
    errors: list[str],
) -> None:
    for index in range(ctx.plan.runs):
        run: dict[str, dict[str, Any]] = {t.name: {} for t in targets}
        runs.append(run)
        # Rotate the order each run so no target always goes first on a warm or cold machine.
        order = targets[index % len(targets) :] + targets[: index % len(targets)]
        for scenario in scenarios:
            for target in order:
                _log(f"run {index + 1}/{ctx.plan.runs} {scenario} {target.name} ...")
                try:
                    result = await SCENARIOS[scenario](target, ctx)
                except Exception as exc:  # noqa: BLE001 - one failed scenario must not end the run
                    result = {"error": f"{type(exc).__name__}: {exc}"}
                    errors.append(f"run {index + 1} {scenario} {target.name}: {result['error']}")
                run[target.name][scenario] = result
                _log(f"run {index + 1} {scenario} {target.name}: {_one_line(scenario, result)}")


async def _main(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)

    layout = Layout.here()
    plan = Plan.for_mode(args.quick)
    errors: list[str] = []
    targets: list[Target] = []
    for name in args.targets.split(","):
        if name.startswith("moosic") and not moosic_available(layout):
            errors.append("moosic skipped: gateway/__main__.py or .venv/bin/python is missing")
            continue
        targets.append(TARGETS[name])
    started = datetime.now(UTC)
    stem = f"bench-{started:%Y%m%dT%H%M%SZ}-{plan.mode}"
    ctx = Context(layout, plan, secrets.token_urlsafe(32), layout.work / "logs" / stem)
    # Taken before the runs: the gateway's checkout may change while a long run goes on.
    found_versions = versions.collect(layout)
    runs: list[dict[str, dict[str, Any]]] = []
    try:
        async with asyncio.timeout(TIME_LIMIT_S[plan.mode]):
            await _run_all(ctx, targets, args.scenarios.split(","), runs, errors)
    except TimeoutError:
        errors.append(f"stopped at the {TIME_LIMIT_S[plan.mode]} s time limit; partial results")
    names = [t.name for t in targets]
    full_report = {
        "meta": {
            "mode": plan.mode,
            "runs": plan.runs,
            "started_utc": f"{started:%Y-%m-%d %H:%M}Z",
            "seconds": round((datetime.now(UTC) - started).total_seconds()),
            "command": os.environ.get("BENCH_COMMAND", " ".join(sys.argv)),
            "plan": vars(plan),
            "logs": str(ctx.logs),
            "versions": found_versions,
        },
        "targets": {t.name: t.description for t in targets},
        "medians": report.medians(runs, names),
        "peak_client_cpu_pct": report.peak_client_cpu(runs),
        "errors": errors,
        "runs": runs,
    }
    _, md_path = report.write(full_report, layout.reports, stem)
    print(md_path.read_text())
    measured = any(
        "error" not in result
        for run in runs
        for per_target in run.values()
        for result in per_target.values()
    )
    return 0 if measured else 1


def main() -> int:
    """Parse arguments and run the benchmark on uvloop."""
    parser = argparse.ArgumentParser(prog="benchkit", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short run, smaller counts")
    parser.add_argument(
        "--targets",
        default="moosic,pysio,sionode",
        help="comma-separated subset of: " + ",".join(TARGETS),
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated subset of: " + ",".join(SCENARIOS),
    )
    args = parser.parse_args()
    unknown = (set(args.targets.split(",")) - set(TARGETS)) | (
        set(args.scenarios.split(",")) - set(SCENARIOS)
    )
    if unknown:
        parser.error(f"unknown target or scenario: {', '.join(sorted(unknown))}")
    try:
        return uvloop.run(_main(args))
    except asyncio.CancelledError:
        _log("interrupted; every process started was stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
