"""Bookkeeping with no locust import: offsets seen per channel, and figures per phase.

``OffsetTracker`` says which offsets of a channel a client never got (live, or after a
reconnect once ``history`` has filled the hole). ``PhaseRecorder`` listens to every locust
request event and keeps one latency histogram per phase, so the summary can give p50/p95/p99
per phase over all of a phase's message traffic (locust's own CSV has percentiles per name
only).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

DELIVERY_KINDS = frozenset({"dm", "group", "room"})
"""Request names (after the phase) that are one message's send→receive latency."""

MESSAGE_NAMES = DELIVERY_KINDS | {"publish", "history"}
"""Names whose latency counts in a phase's p50/p95/p99: the message path, not logins."""

PUBLISH_NAMES = frozenset({"publish", "publish-retry"})
"""Names whose successes count as messages published."""


def split_name(name: str) -> tuple[str, str]:
    """Split a request name "surge room" into ("surge", "room"); no phase gives ("", name)."""
    phase, sep, what = name.partition(" ")
    if not sep:
        return "", name
    return phase, what


class OffsetTracker:
    """The offsets of one channel that a client has seen, as a low mark plus what is ahead.

    Every offset up to ``mark`` was seen (or deliberately given up as missed); ``ahead`` holds
    offsets above it that arrived early, each with the time it arrived, because events from
    different publishers may arrive slightly out of order.
    """

    __slots__ = ("ahead", "mark")

    def __init__(self, start: int) -> None:
        self.mark = start
        self.ahead: dict[int, float] = {}

    def seen(self, offset: int, now: float = 0.0) -> bool:
        """Take one offset; False when it was had already (a repeat)."""
        if offset <= self.mark or offset in self.ahead:
            return False
        if offset != self.mark + 1:
            self.ahead[offset] = now
            return True
        self.mark = offset
        while self.mark + 1 in self.ahead:
            self.mark += 1
            del self.ahead[self.mark]
        return True

    def holes(self, upto: int) -> list[int]:
        """Offsets in (mark, upto] not seen yet."""
        return [o for o in range(self.mark + 1, upto + 1) if o not in self.ahead]

    def backfill(self, offsets: Iterable[int], upto: int) -> list[int]:
        """Take the offsets a ``history`` read returned; return those in (mark, upto] still
        missing, and move the mark to ``upto`` (the channel's offset when resubscribed)."""
        for offset in offsets:
            self.seen(offset)
        missing = self.holes(upto)
        self._skip_to(upto)
        return missing

    def stale(self, now: float, grace: float) -> list[int]:
        """Holes behind an offset that arrived more than ``grace`` seconds ago: these pushes are
        not late but lost. Returns them and moves the mark past them."""
        if not self.ahead or now - min(self.ahead.values()) < grace:
            return []
        top = max(self.ahead)
        missing = self.holes(top)
        self._skip_to(top)
        return missing

    def _skip_to(self, upto: int) -> None:
        if upto > self.mark:
            self.mark = upto
            for offset in [o for o in self.ahead if o <= upto]:
                del self.ahead[offset]
        while self.mark + 1 in self.ahead:
            self.mark += 1
            del self.ahead[self.mark]


def bucket(ms: float) -> float:
    """Round a latency for the histogram: 0.1 ms below 10 ms, 1 ms below 1 s, then 10 ms."""
    if ms < 10:
        return round(ms, 1)
    if ms < 1000:
        return float(round(ms))
    return float(round(ms, -1))


@dataclass
class Histogram:
    counts: dict[float, int] = field(default_factory=dict)
    total: int = 0
    largest: float = 0.0

    def add(self, ms: float) -> None:
        key = bucket(ms)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.total += 1
        self.largest = max(self.largest, ms)

    def percentile(self, p: float) -> float | None:
        """The smallest bucket with at least ``p`` of the samples at or below it."""
        if not self.total:
            return None
        need = max(1, math.ceil(p * self.total))
        running = 0
        for key in sorted(self.counts):
            running += self.counts[key]
            if running >= need:
                return key
        return max(self.counts)


@dataclass
class PhaseStats:
    requests: int = 0
    failures: int = 0
    published: int = 0
    delivered: int = 0
    latency: Histogram = field(default_factory=Histogram)
    delivery: Histogram = field(default_factory=Histogram)
    users_min: int | None = None
    users_max: int = 0
    connected_max: int = 0
    cpu_first: tuple[float, dict[str, float]] | None = None
    cpu_last: tuple[float, dict[str, float]] | None = None

    def cpu_percent(self, group: str) -> float | None:
        """CPU used by ``group`` between the phase's first and last sample, in % of one core."""
        if self.cpu_first is None or self.cpu_last is None:
            return None
        (t0, first), (t1, last) = self.cpu_first, self.cpu_last
        if t1 <= t0 or group not in first or group not in last:
            return None
        return 100.0 * (last[group] - first[group]) / (t1 - t0)


PHASE_COLUMNS = (
    "phase",
    "start_s",
    "end_s",
    "users_min",
    "users_max",
    "ws_connected_max",
    "requests",
    "failures",
    "published",
    "delivered",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "delivery_p50_ms",
    "delivery_p99_ms",
    "locust_cpu_pct",
    "nodes_cpu_pct",
    "redis_cpu_pct",
    "machine_cpu_pct",
)


class PhaseRecorder:
    """Per-phase counts and latency histograms, fed by locust's request event.

    ``windows`` are extra rows by time instead of by name (the surge's ramp and hold): a request
    counts in each window whose span holds ``t``, the run time it was recorded at.
    """

    def __init__(
        self,
        phases: Iterable[tuple[str, float, float]],
        windows: Iterable[tuple[str, float, float]] = (),
    ) -> None:
        self.bounds = {name: (start, end) for name, start, end in phases}
        self.windows = {name: (start, end) for name, start, end in windows}
        self.stats = {name: PhaseStats() for name in (*self.bounds, *self.windows)}

    def record(self, name: str, response_time: float, failed: bool, t: float | None = None) -> None:
        phase, what = split_name(name)
        if phase not in self.bounds:
            return
        self._add(self.stats[phase], what, response_time, failed)
        if t is not None:
            for window, (start, end) in self.windows.items():
                if start <= t < end:
                    self._add(self.stats[window], what, response_time, failed)

    @staticmethod
    def _add(stats: PhaseStats, what: str, response_time: float, failed: bool) -> None:
        stats.requests += 1
        if failed:
            stats.failures += 1
            return
        if what in PUBLISH_NAMES:
            stats.published += 1
        if what in MESSAGE_NAMES:
            stats.latency.add(response_time)
        if what in DELIVERY_KINDS:
            stats.delivered += 1
            stats.delivery.add(response_time)

    def sample(
        self,
        phase: str,
        users: int,
        connected: int,
        now: float = 0.0,
        cpu: dict[str, float] | None = None,
    ) -> None:
        """Note the users and, with ``cpu`` (seconds used so far per process group), CPU."""
        stats = self.stats.get(phase)
        if stats is None:
            return
        if cpu is not None:
            if stats.cpu_first is None:
                stats.cpu_first = (now, cpu)
            stats.cpu_last = (now, cpu)
        stats.users_min = users if stats.users_min is None else min(stats.users_min, users)
        stats.users_max = max(stats.users_max, users)
        stats.connected_max = max(stats.connected_max, connected)

    def rows(self) -> list[dict[str, object]]:
        def ms(value: float | None) -> object:
            return "" if value is None else round(value, 1)

        rows: list[dict[str, object]] = []
        for name, (start, end) in {**self.bounds, **self.windows}.items():
            s = self.stats[name]
            rows.append(
                {
                    "phase": name,
                    "start_s": round(start, 1),
                    "end_s": round(end, 1),
                    "users_min": s.users_min if s.users_min is not None else 0,
                    "users_max": s.users_max,
                    "ws_connected_max": s.connected_max,
                    "requests": s.requests,
                    "failures": s.failures,
                    "published": s.published,
                    "delivered": s.delivered,
                    "p50_ms": ms(s.latency.percentile(0.50)),
                    "p95_ms": ms(s.latency.percentile(0.95)),
                    "p99_ms": ms(s.latency.percentile(0.99)),
                    "max_ms": ms(s.latency.largest if s.latency.total else None),
                    "delivery_p50_ms": ms(s.delivery.percentile(0.50)),
                    "delivery_p99_ms": ms(s.delivery.percentile(0.99)),
                    "locust_cpu_pct": ms(s.cpu_percent("locust")),
                    "nodes_cpu_pct": ms(s.cpu_percent("nodes")),
                    "redis_cpu_pct": ms(s.cpu_percent("redis")),
                    "machine_cpu_pct": ms(s.cpu_percent("machine")),
                }
            )
        return rows

    def write_csv(self, path: str) -> None:
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=PHASE_COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows())


def write_checks(path: str, checks: dict[str, object]) -> None:
    """Write the run's checks (storm outcome, settings) as key,value rows."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["key", "value"])
        for key, value in checks.items():
            writer.writerow([key, value])


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (Linux /proc); None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float | None:
    """CPU seconds every core of the machine has spent busy so far (Linux /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def parse_pids(value: str) -> dict[str, list[int]]:
    """Parse "nodes:123,nodes:456,redis:789" into {"nodes": [123, 456], "redis": [789]}."""
    groups: dict[str, list[int]] = {}
    for item in value.split(","):
        group, sep, pid = item.strip().partition(":")
        if sep and pid.isdigit():
            groups.setdefault(group, []).append(int(pid))
    return groups
