"""Versions of everything a figure depends on, and what machine produced it."""

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from .plan import Layout

_PROBE = """
import importlib.metadata as m, json, platform, sys
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return None
print(json.dumps({"python": platform.python_version(), **{p: version(p) for p in sys.argv[1:]}}))
"""


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=cwd, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({type(exc).__name__})"
    return done.stdout.strip()


def _venv(python: Path, packages: list[str]) -> dict[str, str]:
    if not python.is_file():
        return {}
    out = _run([str(python), "-c", _PROBE, *packages])
    try:
        found: dict[str, str] = json.loads(out)
    except json.JSONDecodeError:
        return {"error": out}
    return found


def _node_packages(modules: Path, names: list[str]) -> dict[str, str]:
    found = {}
    for name in names:
        manifest = modules / name / "package.json"
        if manifest.is_file():
            found[name] = json.loads(manifest.read_text())["version"]
    return found


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def collect(layout: Layout) -> dict[str, object]:
    """Versions of the load generator, each target and the machine."""
    head = _run(["git", "-C", str(layout.repo), "rev-parse", "--short", "HEAD"])
    dirty = _run(
        [
            "git",
            "-C",
            str(layout.repo),
            "status",
            "--porcelain",
            "--",
            "gateway",
            "handlers",
            "storage",
        ]
    )
    return {
        "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "kernel": platform.release()},
        "load_generator": {
            "python": platform.python_version(),
            **{p: metadata.version(p) for p in ("picows", "uvloop")},
        },
        "moosic": {
            "commit": head or "none",
            "uncommitted_changes_in_gateway": bool(dirty),
            **_venv(
                layout.repo / ".venv" / "bin" / "python",
                ["aiohttp", "uvloop", "orjson", "msgspec", "redis", "PyJWT"],
            ),
        },
        "pysio": _venv(
            layout.work / "pysio" / "bin" / "python",
            ["python-socketio", "python-engineio", "aiohttp", "uvloop", "redis", "PyJWT"],
        ),
        "sionode": {
            "node": _run(["node", "--version"]),
            **_node_packages(
                layout.work / "sionode" / "node_modules",
                [
                    "socket.io",
                    "@socket.io/redis-adapter",
                    "redis",
                    "engine.io",
                    "ws",
                    "jsonwebtoken",
                ],
            ),
        },
        "redis": _run(["redis-server", "--version"]),
    }
