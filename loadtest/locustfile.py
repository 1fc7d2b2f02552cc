"""Locust load test of the gateway: baseline, the 6x surge, then a reconnect storm.

Run it through ``loadtest/run.sh`` (``make loadtest``), which starts a local cluster and sets
the ``LOADTEST_*`` variables read here; see loadtest/README.md. Locust needs its own virtual
environment (``loadtest/.venv``): it must not be imported next to the app's packages.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import gevent
from locust import LoadTestShape, events
from locust.env import Environment
from shape import Config, build_plan
from tracking import (
    PhaseRecorder,
    machine_cpu_seconds,
    parse_pids,
    process_cpu_seconds,
    write_checks,
)
from users import RUN, RestUser, VideoViewer, WsChatUser

__all__ = ["RestUser", "SurgeShape", "VideoViewer", "WsChatUser"]

SCENARIOS = frozenset(
    s.strip() for s in os.environ.get("LOADTEST_SCENARIOS", "chat,flood,viral").split(",") if s
)
"""chat (always): the chat, REST and viewer users; flood: a like flood on one viral video with
counts watchers (social.py); viral: an author posting to many followers (viral.py)."""
# Locust runs every User class it finds in this module, so the optional ones are imported only
# when asked for. Their weights are set here so chat stays most of the load.
if "flood" in SCENARIOS:
    from social import CountsWatcher, VideoFan
    from social import configure as configure_flood
    from social import report as flood_report

    VideoFan.weight, CountsWatcher.weight = 2, 1
    __all__ += ["CountsWatcher", "VideoFan"]
if "viral" in SCENARIOS:
    from viral import FeedFollower, ViralAuthor
    from viral import configure as configure_viral
    from viral import report as viral_report

    FeedFollower.weight = 3
    __all__ += ["FeedFollower", "ViralAuthor"]

log = logging.getLogger("loadtest")

CONFIG = Config.from_env()
PLAN = build_plan(CONFIG.duration, CONFIG.baseline)
RECORDER = PhaseRecorder(((p.name, p.start, p.end) for p in PLAN.phases), PLAN.windows())
WATCHED = parse_pids(os.environ.get("LOADTEST_PIDS", ""))
"""The cluster's processes by group ("nodes", "redis"), for CPU per phase."""


class SurgeShape(LoadTestShape):
    """Warmup to the baseline, hold, jump to 6x and hold, then the reconnect storm."""

    def tick(self) -> tuple[int, float] | None:
        return PLAN.tick(self.get_run_time())


@events.init.add_listener
def on_init(environment: Environment, **_kwargs: Any) -> None:
    shape = environment.shape_class
    clock = shape.get_run_time if shape is not None else (lambda: 0.0)
    RUN.configure(CONFIG, PLAN, clock)
    environment.events.request.add_listener(on_request)

    def phase() -> str:
        return PLAN.phase_name(RUN.clock())

    if "flood" in SCENARIOS:
        configure_flood(CONFIG.hosts, phase)
    if "viral" in SCENARIOS:
        configure_viral(CONFIG.hosts, phase)


def on_request(
    request_type: str, name: str, response_time: float, exception: Any = None, **_kwargs: Any
) -> None:
    RECORDER.record(name, response_time, exception is not None, RUN.clock())


@events.test_start.add_listener
def on_test_start(environment: Environment, **_kwargs: Any) -> None:
    gevent.spawn(director, environment)


def director(environment: Environment) -> None:
    """Sample users per phase every second; drop every socket at the storm; judge the storm."""
    runner = environment.runner
    storm_done = checked = False
    while runner is not None:
        t = RUN.clock()
        phase = PLAN.phase_at(t)
        if phase is None:
            break
        connected = sum(1 for c in RUN.clients if c.connected)
        now, cpu = time.monotonic(), cpu_used()
        RECORDER.sample(phase.name, runner.user_count, connected, now, cpu)
        for window, start, end in PLAN.windows():
            if start <= t < end:
                RECORDER.sample(window, runner.user_count, connected, now, cpu)
        if not storm_done and t >= PLAN.storm_at:
            storm_done = True
            start_storm()
        if storm_done and not checked and t >= PLAN.storm_check_at:
            checked = True
            judge_storm()
        gevent.sleep(1.0)


def cpu_used() -> dict[str, float]:
    """CPU seconds used so far: this locust process, and each group of cluster processes."""
    times = os.times()
    used = {"locust": times.user + times.system}
    machine = machine_cpu_seconds()
    if machine is not None:
        used["machine"] = machine
    for group, pids in WATCHED.items():
        readings = [process_cpu_seconds(pid) for pid in pids]
        if all(r is not None for r in readings):
            used[group] = sum(r for r in readings if r is not None)
    return used


def start_storm() -> None:
    storm = RUN.storm
    storm.generation += 1
    storm.dropped_at = time.time()
    storm.expected = list(RUN.clients)
    log.warning("reconnect storm: dropping %d WebSocket clients", len(storm.expected))
    for client in storm.expected:
        client.drop(storm.generation)


def judge_storm() -> None:
    storm = RUN.storm
    back = [c for c in storm.expected if c.storm_done == storm.generation]
    RUN_CHECKS.update(
        storm_expected=len(storm.expected),
        storm_back=len(back),
        storm_slowest_s=round(max(storm.back_after, default=0.0), 2),
        storm_recovery=RUN.recovery,
        storm_replayed=storm.replayed,
        storm_not_recovered=" ".join(f"{k}={v}" for k, v in storm.not_recovered.items()),
        storm_backfilled=storm.backfilled,
        storm_missed=storm.missed,
        storm_reconnect_failures=storm.reconnect_failures,
    )
    log.warning("storm: %d of %d clients back", len(back), len(storm.expected))


RUN_CHECKS: dict[str, object] = {
    "duration_s": PLAN.duration,
    "baseline_users": CONFIG.baseline,
    "surge_users": PLAN.phases[2].users,
    "nodes": len(CONFIG.hosts),
    "storm_at_s": PLAN.storm_at,
    "storm_check_at_s": PLAN.storm_check_at,
}


@events.quitting.add_listener
def on_quitting(environment: Environment, **_kwargs: Any) -> None:
    os.makedirs(CONFIG.out_dir, exist_ok=True)
    RUN_CHECKS["missed_total"] = RUN.missed
    RUN_CHECKS["duplicates_total"] = RUN.duplicates
    RUN_CHECKS.setdefault("storm_expected", "")
    RECORDER.write_csv(os.path.join(CONFIG.out_dir, "phases.csv"))
    write_checks(os.path.join(CONFIG.out_dir, "checks.csv"), RUN_CHECKS)
    extra: dict[str, Any] = {"scenarios": sorted(SCENARIOS)}
    if "flood" in SCENARIOS:
        extra["flood"] = flood_report()
    if "viral" in SCENARIOS:
        extra["viral"] = viral_report()
    with open(os.path.join(CONFIG.out_dir, "scenarios.json"), "w") as out:
        json.dump(extra, out, indent=2, default=str)
