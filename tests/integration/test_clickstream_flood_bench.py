"""The clickstream flood benchmark runs and checks itself (a small flood, a tiny buffer): every
event taken and written once, the bound held. Its latency figures are never asserted here; the
full run is in docs/benchmarks.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_flood_takes_every_event_once_within_the_bound() -> None:
    command = [sys.executable, "-m", "loadtest.clickstream_flood"]
    command += ["--users", "300", "--events", "10", "--buffer", "200", "--flood-rate", "0"]
    command += ["--phase", "1", "--rate", "20"]
    done = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "= 3,000 events over two nodes" in done.stdout
    assert "3,000 taken" in done.stdout
    rows = [line.split() for line in done.stdout.splitlines() if line.strip()[:2] in ("A ", "B ")]
    assert len(rows) == 2
    for _node, accepted, _refused, written, peak in rows:
        assert accepted == written == "1,500"
        assert float(peak.replace(",", "")) <= 200
