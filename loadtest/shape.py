"""The load shape as a plain table: warmup, baseline, the 6x surge, then a reconnect storm.

No locust import here: the app's test suite checks this table, and ``locustfile.py`` wraps it in
a ``LoadTestShape``. Times are seconds since the shape started.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

PHASES = ("warmup", "baseline", "surge", "storm")
"""Phase names in order; request names are prefixed with one of them ("surge room")."""

SURGE_FACTOR = 6
"""The surge holds 6x the baseline's users: the 500% jump the product was built for."""

# Share of the run each phase gets, and the least time each needs to mean anything.
_SHARES = {"warmup": 0.12, "baseline": 0.28, "surge": 0.38, "storm": 0.22}
_MINIMUM = {"warmup": 8.0, "baseline": 15.0, "surge": 20.0, "storm": 15.0}
MIN_DURATION = sum(_MINIMUM.values())

STORM_WINDOW = 3.0
"""Every WebSocket user reconnects at a random moment within this many seconds of the drop."""

RAMP_SETTLE = 3.0
"""Seconds after the last surge user started during which its sign-up still counts as ramp."""

STORM_SETTLE = 8.0
"""Seconds after the window by which every client must be back, resubscribed and caught up."""


@dataclass(frozen=True)
class Phase:
    name: str
    start: float
    end: float
    users: int
    """Users the runner is asked to hold during the phase."""
    spawn_rate: float
    """Users started per second to get there."""

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Plan:
    phases: tuple[Phase, ...]
    storm_at: float
    """When every WebSocket user's socket is dropped (the storm phase's start)."""
    storm_check_at: float
    """When the storm's verdict is taken: every client back and nothing missed by then."""
    surge_ramp_end: float = 0.0
    """When the surge's new users have all started (plus a little settling): the summary shows
    the surge's ramp and hold apart, though it judges the surge as a whole."""

    def windows(self) -> tuple[tuple[str, float, float], ...]:
        """Sub-windows reported beside the phases: the surge's ramp and its hold."""
        surge = self.phases[2]
        return (
            ("surge-ramp", surge.start, self.surge_ramp_end),
            ("surge-hold", self.surge_ramp_end, surge.end),
        )

    @property
    def duration(self) -> float:
        return self.phases[-1].end

    def phase_at(self, t: float) -> Phase | None:
        """The phase running ``t`` seconds after the start; None once the plan is over."""
        if t < 0:
            return self.phases[0]
        for phase in self.phases:
            if t < phase.end:
                return phase
        return None

    def phase_name(self, t: float) -> str:
        """Like ``phase_at`` but always a name (the last phase once the plan is over)."""
        phase = self.phase_at(t)
        return phase.name if phase is not None else self.phases[-1].name

    def tick(self, t: float) -> tuple[int, float] | None:
        """What a ``LoadTestShape.tick`` returns at ``t``: (users, spawn rate), or None to stop."""
        phase = self.phase_at(t)
        if phase is None:
            return None
        return phase.users, phase.spawn_rate


def build_plan(duration: float, baseline: int, surge_factor: int = SURGE_FACTOR) -> Plan:
    """Split ``duration`` seconds into the four phases for ``baseline`` users."""
    if baseline < 1:
        raise ValueError("the baseline needs at least one user")
    if duration < MIN_DURATION:
        raise ValueError(f"the run needs at least {MIN_DURATION:.0f} s (four phases)")
    lengths = {name: max(_MINIMUM[name], duration * _SHARES[name]) for name in PHASES}
    # Give back what the minimums took from the longest phase, so the total stays `duration`.
    excess = sum(lengths.values()) - duration
    if excess > 0:
        for name in sorted(PHASES, key=lambda n: lengths[n] - _MINIMUM[n], reverse=True):
            give = min(excess, lengths[name] - _MINIMUM[name])
            lengths[name] -= give
            excess -= give
    surge_users = baseline * surge_factor
    # The baseline arrives within ~3 s; the surge's new users within a quarter of the surge
    # phase (at most 10 s): a sudden jump, not a slow climb.
    warmup_rate = max(1.0, baseline / 3.0)
    surge_rate = max(1.0, (surge_users - baseline) / min(10.0, lengths["surge"] / 4))
    users = {"warmup": baseline, "baseline": baseline, "surge": surge_users, "storm": surge_users}
    rates = {"warmup": warmup_rate, "baseline": warmup_rate, "surge": surge_rate}
    rates["storm"] = surge_rate
    phases = []
    start = 0.0
    for name in PHASES:
        end = start + lengths[name]
        phases.append(
            Phase(name, round(start, 3), round(end, 3), users[name], round(rates[name], 3))
        )
        start = end
    storm = phases[-1]
    check_at = min(storm.start + STORM_WINDOW + STORM_SETTLE, storm.end - 1.0)
    surge = phases[2]
    ramp_end = min(surge.start + (surge_users - baseline) / surge_rate + RAMP_SETTLE, surge.end)
    return Plan(tuple(phases), storm.start, check_at, round(ramp_end, 3))


@dataclass(frozen=True)
class Config:
    """What ``run.sh`` passes to the locustfile through the environment."""

    hosts: tuple[str, ...]
    duration: float
    baseline: int
    out_dir: str
    run_id: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        hosts = tuple(h.strip().rstrip("/") for h in env.get("LOADTEST_HOSTS", "").split(","))
        hosts = tuple(h for h in hosts if h)
        if not hosts:
            hosts = ("http://127.0.0.1:8080",)
        for host in hosts:
            if not host.startswith(("http://127.", "http://localhost", "http://[::1]")):
                raise ValueError(f"LOADTEST_HOSTS must be loopback addresses, not {host}")
        return cls(
            hosts=hosts,
            duration=float(env.get("LOADTEST_DURATION", "180")),
            baseline=int(env.get("LOADTEST_BASELINE", "20")),
            out_dir=env.get("LOADTEST_OUT", "loadtest/reports/latest"),
            run_id=env.get("LOADTEST_RUN_ID", "0"),
        )
