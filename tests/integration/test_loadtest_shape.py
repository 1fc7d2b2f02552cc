"""The load test's pure logic: the shape's phase table, offset tracking, the summary's verdict.

Locust itself lives in its own virtual environment (loadtest/.venv); these modules import no
locust, so the app's test suite checks them here, fast and without any network.
"""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

LOADTEST = Path(__file__).resolve().parents[2] / "loadtest"


def load(name: str) -> ModuleType:
    """Import loadtest/<name>.py by path (loadtest/ is a folder of scripts, not a package)."""
    module_name = f"loadtest_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, LOADTEST / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


shape = load("shape")
tracking = load("tracking")
summary = load("summary")


# -- the shape -----------------------------------------------------------------------------


@pytest.mark.parametrize(("duration", "baseline"), [(180, 20), (90, 20), (60, 10), (600, 50)])
def test_plan_phases_are_contiguous_and_surge_is_six_times_the_baseline(
    duration: int, baseline: int
) -> None:
    plan = shape.build_plan(duration, baseline)
    assert [p.name for p in plan.phases] == ["warmup", "baseline", "surge", "storm"]
    assert plan.phases[0].start == 0
    for before, after in zip(plan.phases, plan.phases[1:], strict=False):
        assert before.end == pytest.approx(after.start)
    assert plan.duration == pytest.approx(duration)
    users = {p.name: p.users for p in plan.phases}
    assert users == {
        "warmup": baseline,
        "baseline": baseline,
        "surge": 6 * baseline,
        "storm": 6 * baseline,
    }
    surge = plan.phases[2]
    # The jump reaches 6x within a quarter of the surge phase: a surge, not a slow climb.
    assert (surge.users - baseline) / surge.spawn_rate <= surge.duration / 4 + 1e-6
    assert all(p.duration >= 8 for p in plan.phases)


def test_plan_storm_times_fall_inside_the_storm_phase() -> None:
    plan = shape.build_plan(90, 20)
    storm = plan.phases[-1]
    assert plan.storm_at == storm.start
    assert plan.storm_at + shape.STORM_WINDOW < plan.storm_check_at < storm.end


def test_plan_splits_the_surge_into_ramp_and_hold() -> None:
    plan = shape.build_plan(180, 20)
    surge = plan.phases[2]
    (ramp, ramp_start, ramp_end), (hold, hold_start, hold_end) = plan.windows()
    assert (ramp, hold) == ("surge-ramp", "surge-hold")
    assert ramp_start == surge.start
    assert ramp_end == hold_start
    assert hold_end == surge.end
    # 100 new users at 10/s, plus the settling time.
    assert ramp_end == pytest.approx(surge.start + 10 + shape.RAMP_SETTLE)


def test_plan_tick_and_phase_lookup() -> None:
    plan = shape.build_plan(180, 20)
    baseline, surge = plan.phases[1], plan.phases[2]
    assert plan.tick(baseline.start + 1) == (20, baseline.spawn_rate)
    assert plan.tick(surge.start) == (120, surge.spawn_rate)
    assert plan.tick(plan.duration) is None
    assert plan.phase_at(-1.0) is plan.phases[0]
    assert plan.phase_name(surge.end - 0.01) == "surge"
    assert plan.phase_name(plan.duration + 5) == "storm"


def test_plan_refuses_too_short_a_run_or_no_users() -> None:
    with pytest.raises(ValueError, match="at least"):
        shape.build_plan(shape.MIN_DURATION - 1, 20)
    with pytest.raises(ValueError, match="one user"):
        shape.build_plan(180, 0)


def test_config_takes_only_loopback_hosts() -> None:
    env = {
        "LOADTEST_HOSTS": "http://127.0.0.1:8081/, http://127.0.0.1:8082",
        "LOADTEST_DURATION": "90",
        "LOADTEST_BASELINE": "20",
    }
    config = shape.Config.from_env(env)
    assert config.hosts == ("http://127.0.0.1:8081", "http://127.0.0.1:8082")
    assert (config.duration, config.baseline) == (90.0, 20)
    with pytest.raises(ValueError, match="loopback"):
        shape.Config.from_env({"LOADTEST_HOSTS": "http://10.0.0.5:8080"})


# -- offsets -------------------------------------------------------------------------------


def test_tracker_takes_events_in_and_out_of_order() -> None:
    tracker = tracking.OffsetTracker(10)
    assert tracker.seen(11)
    assert tracker.seen(13, now=1.0)
    assert not tracker.seen(13)  # a repeat
    assert not tracker.seen(9)  # already had (at or below the mark)
    assert tracker.mark == 11
    assert tracker.holes(13) == [12]
    tracker.seen(12)
    assert tracker.mark == 13
    assert tracker.ahead == {}


def test_tracker_backfill_reports_only_what_history_did_not_return() -> None:
    tracker = tracking.OffsetTracker(5)
    tracker.seen(6)
    tracker.seen(12, now=1.0)  # pushed after the reconnect, above the subscribe offset
    # Resubscribed at offset 10; history (newest first) returned 10, 9 and 7 only.
    assert tracker.backfill([10, 9, 7], upto=10) == [8]
    assert tracker.mark == 10
    tracker.seen(11)
    assert tracker.mark == 12


def test_tracker_calls_a_hole_lost_only_after_the_grace() -> None:
    tracker = tracking.OffsetTracker(0)
    tracker.seen(1)
    tracker.seen(3, now=100.0)
    assert tracker.stale(now=102.0, grace=5.0) == []
    assert tracker.stale(now=106.0, grace=5.0) == [2]
    assert tracker.mark == 3
    assert tracker.stale(now=200.0, grace=5.0) == []


# -- per-phase figures ---------------------------------------------------------------------


def test_recorder_splits_by_phase_and_counts_only_the_message_path() -> None:
    recorder = tracking.PhaseRecorder(
        [("baseline", 0.0, 10.0), ("surge", 10.0, 20.0)], [("surge-ramp", 10.0, 12.0)]
    )
    for ms in range(1, 101):  # 1..100 ms
        recorder.record("baseline room", float(ms), failed=False)
    recorder.record("surge room", 7.0, failed=False, t=11.0)  # in the ramp
    recorder.record("surge room", 9.0, failed=False, t=15.0)  # after it
    recorder.record("baseline publish", 5.0, failed=False)
    recorder.record("baseline register", 900.0, failed=False)  # a login: not message latency
    recorder.record("surge dm", 50.0, failed=True)
    recorder.record("no-phase", 1.0, failed=False)
    recorder.sample("surge", users=60, connected=48, now=0.0, cpu={"nodes": 1.0})
    recorder.sample("surge", users=120, connected=96, now=10.0, cpu={"nodes": 3.0})
    rows = {row["phase"]: row for row in recorder.rows()}
    base, surge, ramp = rows["baseline"], rows["surge"], rows["surge-ramp"]
    assert (base["requests"], base["published"], base["delivered"]) == (102, 1, 100)
    assert (base["p50_ms"], base["p99_ms"], base["max_ms"]) == (50.0, 99.0, 100.0)
    assert (surge["requests"], surge["failures"], surge["p99_ms"]) == (3, 1, 9.0)
    assert (ramp["requests"], ramp["p99_ms"]) == (1, 7.0)
    assert (surge["users_min"], surge["users_max"], surge["ws_connected_max"]) == (60, 120, 96)
    assert surge["nodes_cpu_pct"] == 20.0


def test_histogram_buckets_keep_small_latencies_fine() -> None:
    histogram = tracking.Histogram()
    for ms in (0.42, 0.44, 1.26, 250.4, 1234.0):
        histogram.add(ms)
    assert histogram.percentile(0.2) == 0.4
    assert histogram.percentile(0.6) == 1.3
    assert histogram.percentile(0.8) == 250.0
    assert histogram.percentile(1.0) == 1230.0
    assert tracking.Histogram().percentile(0.99) is None


def test_parse_pids() -> None:
    assert tracking.parse_pids("nodes:1,nodes:2, redis:3,bad,x:") == {
        "nodes": [1, 2],
        "redis": [3],
    }


# -- the summary's verdict -----------------------------------------------------------------

GOOD_CHECKS = {
    "storm_expected": "96",
    "storm_back": "96",
    "storm_slowest_s": "3.1",
    "missed_total": "0",
}


def phases(base_p99: str, surge_p99: str, surge_failures: str = "0") -> dict[str, dict[str, str]]:
    return {
        "baseline": {"p99_ms": base_p99, "failures": "0"},
        "surge": {"p99_ms": surge_p99, "failures": surge_failures},
    }


def verdict(checks: list[object]) -> dict[str, bool]:
    return {c.title: c.passed for c in checks}  # type: ignore[attr-defined]


def test_verdict_passes_a_surge_within_twice_the_baseline_and_a_clean_storm() -> None:
    assert verdict(summary.judge(phases("8", "16"), GOOD_CHECKS)) == {"surge": True, "storm": True}


@pytest.mark.parametrize(
    ("rows", "checks", "expected"),
    [
        (phases("8", "16.1"), GOOD_CHECKS, {"surge": False, "storm": True}),
        (phases("8", "9", surge_failures="1"), GOOD_CHECKS, {"surge": False, "storm": True}),
        (phases("", "9"), GOOD_CHECKS, {"surge": False, "storm": True}),
        (phases("8", "9"), {**GOOD_CHECKS, "storm_back": "95"}, {"surge": True, "storm": False}),
        (phases("8", "9"), {**GOOD_CHECKS, "missed_total": "2"}, {"surge": True, "storm": False}),
        (phases("8", "9"), {}, {"surge": True, "storm": False}),
    ],
)
def test_verdict_fails(
    rows: dict[str, dict[str, str]], checks: dict[str, str], expected: dict[str, bool]
) -> None:
    assert verdict(summary.judge(rows, checks)) == expected


def write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_summary_renders_a_run_from_its_csv_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorder = tracking.PhaseRecorder(
        [("warmup", 0, 10), ("baseline", 10, 30), ("surge", 30, 60), ("storm", 60, 80)]
    )
    for phase, ms in (("baseline", 4.0), ("surge", 7.0), ("storm", 30.0)):
        for _ in range(200):
            recorder.record(f"{phase} room", ms, failed=False)
            recorder.record(f"{phase} publish", ms / 2, failed=False)
    recorder.write_csv(str(tmp_path / "phases.csv"))
    tracking.write_checks(
        str(tmp_path / "checks.csv"), {**GOOD_CHECKS, "nodes": 2, "duration_s": 80}
    )
    stats = {"Type": "WS", "Name": "surge room", "Request Count": "200", "99%": "7"}
    write_csv(tmp_path / "locust_stats.csv", [stats])
    (tmp_path / "metrics-node1.txt").write_text(
        "moosic_internal_errors_total 0.0\n"
        'moosic_delivery_lag_seconds_bucket{le="0.25"} 995.0\n'
        "moosic_delivery_lag_seconds_count 1000.0\n"
    )
    (tmp_path / "metrics-node2.txt").write_text(
        'moosic_delivery_lag_seconds_bucket{le="0.25"} 980.0\n'
        "moosic_delivery_lag_seconds_count 1000.0\n"
    )

    assert summary.main(["summary.py", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "PASS  surge: p99 7 ms vs baseline 4 ms" in out
    assert "96/96 WebSocket clients back" in out
    assert "failures: none" in out
    assert "node1 99.50% of 1,000, node2 98.00% of 1,000: MISSED" in out
    assert out.rstrip().splitlines()[-1].startswith("PASS")  # reported, not judged

    write_csv(
        tmp_path / "locust_failures.csv",
        [
            {
                "Method": "WS",
                "Name": "surge missed",
                "Error": "LoadError('2 offsets')",
                "Occurrences": "1",
            }
        ],
    )
    tracking.write_checks(str(tmp_path / "checks.csv"), {**GOOD_CHECKS, "missed_total": 2})
    assert summary.main(["summary.py", str(tmp_path)]) == 1
    assert "surge missed" in capsys.readouterr().out
    assert summary.main(["summary.py", str(tmp_path / "nowhere")]) == 2
