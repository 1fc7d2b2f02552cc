"""``python -m gateway`` as an operator meets it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.support.servers import ROOT, GatewayNode


def test_bad_settings_exit_2_with_one_line_each() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOOSIC_")}
    env.update({"MOOSIC_PORT": "http", "MOOSIC_ALLOWED_COUNTRIES": "Cambodia"})
    result = subprocess.run(
        [sys.executable, "-m", "gateway"],
        check=False,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "Moosic Gateway cannot start; fix these settings:"
    assert sorted(line.strip() for line in lines[1:]) == [
        "MOOSIC_ALLOWED_COUNTRIES='Cambodia': not two-letter country codes: CAMBODIA",
        "MOOSIC_JWT_SECRET: required (or set MOOSIC_DEV=1 for a generated one)",
        "MOOSIC_PORT='http': must be a whole number",
    ]


def test_development_run_on_embedded_defaults(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOOSIC_")}
    env.update({"MOOSIC_DEV": "1", "MOOSIC_SQLITE_PATH": str(tmp_path / "dev.db")})
    node = GatewayNode(env, tmp_path / "dev.log").start()
    try:
        with urllib.request.urlopen(node.base_url + "/healthz", timeout=5) as response:
            assert response.read() == b'{"status":"ok"}'
    finally:
        assert node.process is not None
        process = node.process
        node.stop(signal.SIGTERM)
    assert process.returncode == 0
    log = (tmp_path / "dev.log").read_text()
    assert "store=sqlite, broker=in-process, loop=uvloop, countries=KH" in log
    assert "development run (MOOSIC_DEV=1)" in log
    assert "generated a random one for this session" in log
    assert (tmp_path / "dev.db").exists()
