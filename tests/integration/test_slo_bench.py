"""The SLO load test runs and checks itself on a small load (two nodes, one Redis): every
message heard, each node's share read from its own lag histogram. Its figures are never asserted
here beyond the script's own verdict; the runs are in docs/operations.md."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_slo_run_hears_everything_and_reads_both_histograms() -> None:
    command = [sys.executable, "-m", "loadtest.slo", "--seconds", "2", "--rate", "20"]
    command += ["--rooms", "2", "--subscribers", "6"]
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
    found = re.search(
        r"([\d,]+) messages in .*: ([\d,]+) deliveries expected, ([\d,]+) heard", done.stdout
    )
    assert found, done.stdout
    sent, expected, heard = (int(g.replace(",", "")) for g in found.groups())
    assert sent >= 30
    assert expected == heard == sent * 6  # 12 sockets in 2 rooms: 6 listeners a room
    rows = [line.split() for line in done.stdout.splitlines() if line[:2] in ("A ", "B ")]
    assert [row[2] for row in rows] == [str(sent)] * 2  # every event observed once a node
