"""The servers compared, and how a scenario starts a cluster of one of them.

Every cluster gets its own Redis (server core, no persistence) and its own fresh nodes on free
loopback ports; every target runs with Redis in every scenario, as a team deploys it.
"""

import asyncio
import itertools
import os
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from .plan import Layout, Plan
from .procs import (
    Proc,
    free_port,
    http_ok,
    redis_pong,
    spawn,
    stop,
    tree_cpu_s,
    tree_rss_bytes,
    wait_until,
)
from .wire import MoosicWire, SocketIOWire, Wire

READY_TIMEOUT_S = 30.0
MOOSIC_BACKLOG_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Context:
    """What every scenario needs: where things are, how big to run, the shared JWT secret."""

    layout: Layout
    plan: Plan
    secret: str
    logs: Path


@dataclass(frozen=True)
class NodeSpec:
    """What one node of a cluster is given."""

    port: int
    redis_url: str
    secret: str
    data_dir: Path
    redis_cluster: bool = False


Launch = tuple[list[str], dict[str, str], Path | None]


@dataclass(frozen=True)
class Target:
    """A server to benchmark: its wire protocol, readiness path and launch command."""

    name: str
    description: str
    wire: Wire
    ready_path: str
    launch: Callable[[Layout, NodeSpec], Launch]
    redis_shards: int = 1
    """1: one redis-server; more: a Redis Cluster of that many primaries (no replicas)."""


def _base_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
    }


def _moosic(layout: Layout, node: NodeSpec) -> Launch:
    env = _base_env() | {
        "MOOSIC_HOST": "127.0.0.1",
        "MOOSIC_PORT": str(node.port),
        "MOOSIC_JWT_SECRET": node.secret,
        "MOOSIC_DEV": "1",
        # Nodes of one cluster share one store, as a deployment shares its database.
        "MOOSIC_SQLITE_PATH": str(node.data_dir / "moosic.sqlite3"),
        "MOOSIC_REDIS_URL": node.redis_url,
        **({"MOOSIC_REDIS_CLUSTER": "1"} if node.redis_cluster else {}),
        "MOOSIC_WS_MAX_BACKLOG_BYTES": str(MOOSIC_BACKLOG_BYTES),
        # Publishers here send far faster than a person may (publish=200/40s by default) and
        # the peers have no limits: measure the fan-out, not the rate limiter's refusals.
        "MOOSIC_RATE_LIMITS": "off",
        # Every client socket comes from 127.0.0.1: the per-address cap of connections not yet
        # signed in would refuse a connection storm's handshakes, which real users spread out.
        "MOOSIC_HTTP_MAX_UNAUTHENTICATED_PER_ADDRESS": "0",
    }
    return [str(layout.repo / ".venv" / "bin" / "python"), "-m", "gateway"], env, layout.repo


def _baseline_env(node: NodeSpec) -> dict[str, str]:
    return _base_env() | {
        "BENCH_HOST": "127.0.0.1",
        "BENCH_PORT": str(node.port),
        "BENCH_REDIS_URL": node.redis_url,
        "BENCH_JWT_SECRET": node.secret,
    }


def _pysio(layout: Layout, node: NodeSpec) -> Launch:
    python = layout.work / "pysio" / "bin" / "python"
    return (
        [str(python), str(layout.bench / "baselines" / "pysio_server.py")],
        _baseline_env(node),
        None,
    )


def _sionode(layout: Layout, node: NodeSpec) -> Launch:
    env = _baseline_env(node) | {
        "NODE_PATH": str(layout.work / "sionode" / "node_modules"),
        "NODE_ENV": "production",
    }
    return ["node", str(layout.bench / "baselines" / "sionode" / "server.js")], env, None


TARGETS: dict[str, Target] = {
    "moosic": Target(
        "moosic",
        "Moosic Gateway (python -m gateway, SQLite store, Redis broker)",
        MoosicWire(),
        "/readyz",
        _moosic,
    ),
    "moosic-cluster": Target(
        "moosic-cluster",
        "Moosic Gateway on a 3-shard Redis Cluster (MOOSIC_REDIS_CLUSTER=1, sharded pub/sub)",
        MoosicWire(),
        "/readyz",
        _moosic,
        redis_shards=3,
    ),
    "pysio": Target(
        "pysio",
        "python-socketio 5, aiohttp mode, AsyncRedisManager, uvloop",
        SocketIOWire(),
        "/healthz",
        _pysio,
    ),
    "sionode": Target(
        "sionode",
        "Node socket.io 4 + @socket.io/redis-adapter",
        SocketIOWire(),
        "/healthz",
        _sionode,
    ),
}


def moosic_available(layout: Layout) -> bool:
    """Whether the gateway can be started from this checkout."""
    return (layout.repo / "gateway" / "__main__.py").is_file() and (
        layout.repo / ".venv" / "bin" / "python"
    ).is_file()


@dataclass(frozen=True)
class Cluster:
    """Running nodes of one target plus their Redis (one server, or a cluster's primaries)."""

    target: Target
    ports: list[int]
    nodes: list[Proc]
    redis: list[Proc]

    def server_cpu_s(self) -> float:
        """CPU seconds of every node and its descendants (Redis excluded)."""
        return sum(tree_cpu_s(node.pid) for node in self.nodes)

    def redis_cpu_s(self) -> float:
        """CPU seconds of the cluster's Redis (every shard)."""
        return sum(tree_cpu_s(proc.pid) for proc in self.redis)

    def server_rss_bytes(self) -> int:
        """Resident memory of every node and its descendants (Redis excluded)."""
        return sum(tree_rss_bytes(node.pid) for node in self.nodes)

    def check_alive(self) -> None:
        """Raise if any process of the cluster has exited."""
        for proc in (*self.nodes, *self.redis):
            proc.check_alive()


_serial = itertools.count(1)


@asynccontextmanager
async def running(target: Target, nodes: int, ctx: Context, tag: str) -> AsyncIterator[Cluster]:
    """Start Redis and `nodes` fresh nodes of target; stop all of them on the way out."""
    name = f"{next(_serial):03d}-{target.name}-{tag}"
    data_dir = ctx.layout.work / "tmp" / name
    data_dir.mkdir(parents=True, exist_ok=True)
    procs: list[Proc] = []
    try:
        redis_procs: list[Proc] = []
        redis_ports: list[int] = []
        for shard in range(target.redis_shards):
            redis_port = free_port()
            extra = []
            if target.redis_shards > 1:
                bus = free_port()
                extra = ["--cluster-enabled", "yes", "--cluster-port", str(bus)]
                extra += ["--cluster-config-file", str(data_dir / f"nodes-{shard}.conf")]
            redis = spawn(
                "redis" if target.redis_shards == 1 else f"redis shard {shard}",
                [
                    "redis-server",
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(redis_port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(data_dir),
                    *extra,
                ],
                _base_env(),
                ctx.logs / f"{name}-redis{shard}.log",
                ctx.layout.pidfile,
            )
            procs.append(redis)
            redis_procs.append(redis)
            redis_ports.append(redis_port)
            await wait_until(redis_pong(redis_port), "redis", redis, READY_TIMEOUT_S)
        redis_url = f"redis://127.0.0.1:{redis_ports[0]}/0"
        if target.redis_shards > 1:
            await _create_cluster(redis_ports)
            redis_url = "redis://" + ",".join(f"127.0.0.1:{p}" for p in redis_ports)
        ports: list[int] = []
        for index in range(nodes):
            port = free_port()
            argv, env, cwd = target.launch(
                ctx.layout,
                NodeSpec(port, redis_url, ctx.secret, data_dir, target.redis_shards > 1),
            )
            node = spawn(
                f"{target.name} node {index}",
                argv,
                env,
                ctx.logs / f"{name}-node{index}.log",
                ctx.layout.pidfile,
                cwd,
            )
            procs.append(node)
            ports.append(port)
            # One node at a time: nodes of one cluster may race to create a shared store.
            await wait_until(
                http_ok(port, target.ready_path),
                f"{target.name} node {index}",
                node,
                READY_TIMEOUT_S,
            )
        yield Cluster(target, ports, procs[len(redis_procs) :], redis_procs)
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(data_dir, ignore_errors=True)


async def _create_cluster(ports: list[int]) -> None:
    """Join the servers into a Redis Cluster (primaries only) and wait until it serves."""
    nodes = [f"127.0.0.1:{port}" for port in ports]
    create = await asyncio.create_subprocess_exec(
        "redis-cli",
        "--cluster",
        "create",
        *nodes,
        "--cluster-yes",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    if await asyncio.wait_for(create.wait(), READY_TIMEOUT_S) != 0:
        raise RuntimeError("redis-cli --cluster create failed")
    deadline = asyncio.get_running_loop().time() + READY_TIMEOUT_S
    while asyncio.get_running_loop().time() < deadline:
        info = await asyncio.create_subprocess_exec(
            "redis-cli",
            "-p",
            str(ports[0]),
            "CLUSTER",
            "INFO",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await info.communicate()
        if b"cluster_state:ok" in out:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
