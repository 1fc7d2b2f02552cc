"""Real processes for tests: a private redis-server and gateway nodes, on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, Self

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_binary() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found is None:
        raise RuntimeError("redis-server is not installed; run `make test` (it installs it)")
    return found


def redis_command(port: int, workdir: Path, *extra: str) -> list[str]:
    """A loopback-only ``redis-server`` that keeps nothing on disk, logging into ``workdir``."""
    return [
        redis_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--logfile",
        str(workdir / "redis.log"),
        *extra,
    ]


class SharedRedis(Protocol):
    """What gateway nodes share: one Redis (:class:`RedisServer`) or a Redis Cluster
    (:class:`tests.support.redis_cluster.RedisCluster`)."""

    @property
    def url(self) -> str: ...

    cluster: bool


class RedisServer:
    """A throwaway redis-server: loopback only, no persistence, killed at stop()."""

    cluster = False

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            redis_command(self.port, self.workdir),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


class GatewayNode:
    """``python -m gateway`` in a subprocess, ready once ``/readyz`` answers 200."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            # As in tests/conftest.py: test publishers outpace people; other limits stay on.
            "MOOSIC_RATE_LIMITS": "publish=off",
            **env,
            "MOOSIC_HOST": "127.0.0.1",
            "MOOSIC_PORT": str(self.port),
        }
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The process to start (a subclass may wrap the gateway)."""
        return [sys.executable, "-m", "gateway"]

    def start(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), env=self.env, cwd=ROOT, stdout=log, stderr=log
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"gateway exited with {self.process.returncode}:\n{self.log_path.read_text()}"
                )
            try:
                with urllib.request.urlopen(self.base_url + "/readyz", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"gateway not ready in time:\n{self.log_path.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None


TEST_JWT_SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
"""The secret every test gateway signs with (tests/conftest.py re-exports it as JWT_SECRET)."""


def local_env(work: Path, **extra: str) -> dict[str, str]:
    """Settings for one gateway process on its embedded defaults, its files under ``work``."""
    return {
        "MOOSIC_DEV": "1",
        "MOOSIC_JWT_SECRET": TEST_JWT_SECRET,
        "MOOSIC_SQLITE_PATH": str(work / "gateway.db"),
        "MOOSIC_MEDIA_DIR": str(work / "media"),
        "MOOSIC_CLICKSTREAM_DIR": str(work / "clickstream"),
        "MOOSIC_MAIL_DIR": str(work / "mail"),
        "MOOSIC_PUSH_DIR": str(work / "push"),
        "MOOSIC_SCRYPT_N": "1024",
        "MOOSIC_LOG_LEVEL": "WARNING",
        **extra,
    }


def node_env(redis: SharedRedis, tmp_path: Path, **extra: str) -> dict[str, str]:
    """Settings for gateway processes that share one Redis (or a Redis Cluster) and one SQLite
    file."""
    return {
        "MOOSIC_DEV": "1",
        "MOOSIC_JWT_SECRET": TEST_JWT_SECRET,
        "MOOSIC_SQLITE_PATH": str(tmp_path / "shared.db"),
        "MOOSIC_CLICKSTREAM_DIR": str(tmp_path / "clickstream"),
        "MOOSIC_MAIL_DIR": str(tmp_path / "mail"),
        "MOOSIC_PUSH_DIR": str(tmp_path / "push"),
        "MOOSIC_REDIS_URL": redis.url,
        **({"MOOSIC_REDIS_CLUSTER": "1"} if redis.cluster else {}),
        "MOOSIC_REDIS_PREFIX": f"t{os.urandom(4).hex()}:",
        "MOOSIC_SCRYPT_N": "1024",
        "MOOSIC_LOG_LEVEL": "WARNING",
        **extra,
    }


@contextlib.contextmanager
def running_nodes(
    env: dict[str, str], tmp_path: Path, count: int = 2
) -> Iterator[list[GatewayNode]]:
    """Start ``count`` gateway processes one after the other; always stop them."""
    started: list[GatewayNode] = []
    try:
        for index in range(count):
            started.append(GatewayNode(env, tmp_path / f"node-{index}.log").start())
        yield started
    finally:
        for node in started:
            node.stop()
