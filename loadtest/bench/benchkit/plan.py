"""How big and how long each scenario runs, in full and in quick mode."""

from dataclasses import dataclass
from pathlib import Path

RAMP_OFFERED = (
    10_000,
    15_000,
    20_000,
    25_000,
    30_000,
    40_000,
    50_000,
    60_000,
    75_000,
    100_000,
    125_000,
    150_000,
    175_000,
    200_000,
    250_000,
    300_000,
)
"""Offered deliveries per second, stepped up in S1/S2 (messages/s = offered / subscribers).

Must include Plan.fixed_offered: that step is measured longer and gives CPU per delivery."""


@dataclass(frozen=True)
class Plan:
    """Sizes and durations of one benchmark run."""

    mode: str
    runs: int
    fanout_subscribers: int
    fixed_offered: int
    warmup_s: float
    step_s: float
    fixed_step_s: float
    idle_connections: int
    chat_connections: int
    chat_warmup_s: float
    chat_window_s: float
    settle_s: float
    open_concurrency: int = 100
    p99_limit_ms: float = 250.0
    drain_timeout_s: float = 10.0
    message_bytes: int = 200

    @classmethod
    def for_mode(cls, quick: bool) -> "Plan":
        """Return the quick plan (one short run) or the full one (three runs)."""
        if quick:
            return cls(
                mode="quick",
                runs=1,
                fanout_subscribers=1_000,
                fixed_offered=100_000,
                warmup_s=0.5,
                step_s=2.0,
                fixed_step_s=3.0,
                idle_connections=5_000,
                chat_connections=2_000,
                chat_warmup_s=2.0,
                chat_window_s=8.0,
                settle_s=1.0,
            )
        return cls(
            mode="full",
            runs=3,
            fanout_subscribers=1_000,
            fixed_offered=100_000,
            warmup_s=1.0,
            step_s=3.0,
            fixed_step_s=6.0,
            idle_connections=10_000,
            chat_connections=2_000,
            chat_warmup_s=3.0,
            chat_window_s=20.0,
            settle_s=2.0,
        )


@dataclass(frozen=True)
class Layout:
    """Where the harness finds the repository, its own tools and where it writes."""

    repo: Path
    bench: Path
    work: Path
    reports: Path

    @classmethod
    def here(cls) -> "Layout":
        """Derive every path from this file's place in loadtest/bench/benchkit/."""
        bench = Path(__file__).resolve().parent.parent
        return cls(
            repo=bench.parent.parent,
            bench=bench,
            work=bench / ".work",
            reports=bench.parent / "reports",
        )

    @property
    def pidfile(self) -> Path:
        """File listing every process group the harness started (run.sh kills leftovers)."""
        return self.work / "run" / "pids"
