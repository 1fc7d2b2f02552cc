"""Start, watch and stop server processes; read their CPU time and memory from /proc."""

import asyncio
import contextlib
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import NotReadyError, ProcessExitedError

CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CORE = 0


@dataclass
class Proc:
    """A process the harness started in its own session (so its group id is its pid)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """Process id, also the id of its process group."""
        return self.popen.pid

    def check_alive(self) -> None:
        """Raise if the process has exited."""
        code = self.popen.poll()
        if code is not None:
            raise ProcessExitedError(self.name, code, self.log)


def spawn(
    name: str,
    argv: list[str],
    env: dict[str, str],
    log: Path,
    pidfile: Path,
    cwd: Path | None = None,
) -> Proc:
    """Start argv pinned to the server core, in a new session, logging to a file."""
    log.parent.mkdir(parents=True, exist_ok=True)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        popen = subprocess.Popen(
            ["taskset", "-c", str(SERVER_CORE), *argv],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    with pidfile.open("a") as pids:
        pids.write(f"{popen.pid}\n")
    return Proc(name=name, popen=popen, log=log)


def stop(proc: Proc, grace_s: float = 5.0) -> None:
    """Terminate the process group, wait, then kill whatever is left of the group."""
    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.popen.wait(timeout=grace_s)
    _signal_group(proc.pid, signal.SIGKILL)
    proc.popen.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which may itself hold spaces and parentheses.
    return raw[raw.rindex(")") + 2 :].split()


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [root], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system, all threads) of a process and all its descendants."""
    ticks = 0
    for pid in _descendants(root):
        fields = _stat_fields(pid)
        if fields is not None:
            # utime, stime are fields 14, 15 of /proc/<pid>/stat (11, 12 after the name).
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def tree_rss_bytes(root: int) -> int:
    """Resident memory of a process and all its descendants."""
    total = 0
    for pid in _descendants(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def own_cpu_s() -> float:
    """CPU seconds used so far by this process (the load generator), all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


Probe = Callable[[], Awaitable[bool]]


async def wait_until(probe: Probe, what: str, proc: Proc, timeout_s: float) -> None:
    """Poll an async probe until it passes; fail early if the process dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        proc.check_alive()
        if await probe():
            return
        await asyncio.sleep(0.1)
    raise NotReadyError(what, timeout_s, proc.log)


def http_ok(port: int, path: str) -> Probe:
    """Probe that passes when GET path on 127.0.0.1:port answers 200."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()

    async def probe() -> bool:
        return (await _exchange(port, request)).startswith(b"HTTP/1.1 200")

    return probe


def redis_pong(port: int) -> Probe:
    """Probe that passes when Redis on 127.0.0.1:port answers PING."""

    async def probe() -> bool:
        return (await _exchange(port, b"PING\r\n")).startswith(b"+PONG")

    return probe


async def _exchange(port: int, request: bytes) -> bytes:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout=1.0
        )
    except (OSError, TimeoutError):
        return b""
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(64), timeout=2.0)
    except (OSError, TimeoutError):
        return b""
    finally:
        writer.close()
