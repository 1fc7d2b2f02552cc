"""A real Redis Cluster for tests: primaries with replicas on free loopback ports.

Each node is a ``redis-server --cluster-enabled yes`` with its own cluster bus port (chosen free,
not port + 10000, which may be taken or out of range); ``redis-cli --cluster create`` joins them
and gives each primary its replicas. A small ``cluster-node-timeout`` makes a killed primary's
replica take over within a few seconds. Every process is stopped by PID.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from tests.support.servers import READY_TIMEOUT, free_port, redis_command


def redis_cli() -> str:
    found = shutil.which("redis-cli") or (
        "/usr/bin/redis-cli" if Path("/usr/bin/redis-cli").exists() else None
    )
    if found is None:
        raise RuntimeError("redis-cli is not installed; run `make test` (it installs redis)")
    return found


@dataclass
class ClusterNode:
    port: int
    bus_port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cli(self, *args: str, timeout: float = 30) -> str:
        done = subprocess.run(
            [redis_cli(), "-h", "127.0.0.1", "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        return done.stdout


class RedisCluster:
    """``primaries`` primaries with ``replicas`` replicas each, all on loopback."""

    cluster = True

    def __init__(
        self, workdir: Path, *, primaries: int = 3, replicas: int = 1, node_timeout_ms: int = 1000
    ) -> None:
        self.workdir = workdir
        self.primaries = primaries
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[ClusterNode] = []

    @property
    def url(self) -> str:
        """Every node as a seed, the form ``MOOSIC_REDIS_URL`` takes in cluster mode."""
        return "redis://" + ",".join(node.address for node in self.nodes if node.alive)

    def start(self) -> Self:
        count = self.primaries * (1 + self.replicas)
        for index in range(count):
            node = ClusterNode(free_port(), free_port(), self.workdir / f"node-{index}")
            node.workdir.mkdir(parents=True, exist_ok=True)
            node.process = subprocess.Popen(
                redis_command(
                    node.port,
                    node.workdir,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    str(node.bus_port),
                    "--cluster-config-file",
                    str(node.workdir / "nodes.conf"),
                    "--cluster-node-timeout",
                    str(self.node_timeout_ms),
                    # A replica that synced a moment ago may still take over (the default
                    # refuses one whose last contact looks too old right after the create).
                    "--cluster-replica-validity-factor",
                    "0",
                ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.nodes.append(node)
        for node in self.nodes:
            self._wait(lambda n=node: n.cli("PING").strip() == "PONG", f"{node.address} PING")
        subprocess.run(
            [
                redis_cli(),
                "--cluster",
                "create",
                *(node.address for node in self.nodes),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=READY_TIMEOUT,
            check=True,
        )
        self.wait_healthy()
        # The create assigns replicas through gossip: a node may still see a replica as a
        # primary without slots for a moment after the slots are served. Wait for every view.
        self._wait(self._roles_settled, "every replica known as one")
        return self

    def _roles_settled(self) -> bool:
        want = ["primary"] * self.primaries + ["replica"] * (self.primaries * self.replicas)
        for node in self.nodes:
            rows = []
            for line in node.cli("CLUSTER", "NODES").splitlines():
                parts = line.split()
                if len(parts) >= 8:
                    rows.append("primary" if "master" in parts[2] else "replica")
            if sorted(rows) != want:
                return False
        return True

    def _wait(self, ready: object, what: str, timeout: float = READY_TIMEOUT) -> None:
        assert callable(ready)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except (subprocess.SubprocessError, OSError, LookupError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"Redis Cluster: {what} not ready in {timeout:.0f} s")

    def info(self, node: ClusterNode) -> dict[str, str]:
        lines = node.cli("CLUSTER", "INFO").splitlines()
        return dict(line.strip().split(":", 1) for line in lines if ":" in line)

    def wait_healthy(self, timeout: float = READY_TIMEOUT) -> None:
        """Until every live node says ``cluster_state:ok`` with all 16384 slots served."""

        def healthy() -> bool:
            for node in self.nodes:
                if not node.alive:
                    continue
                info = self.info(node)
                if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384":
                    return False
            return True

        self._wait(healthy, "cluster_state:ok", timeout)

    def topology(self) -> list[tuple[str, str, str, list[tuple[int, int]]]]:
        """(node id, address, role, slot ranges) of every node, from a live node's view."""
        live = next(node for node in self.nodes if node.alive)
        rows = []
        for line in live.cli("CLUSTER", "NODES").splitlines():
            parts = line.split()
            if len(parts) < 8:
                continue
            node_id, address, flags = parts[0], parts[1].split("@")[0], parts[2]
            role = "primary" if "master" in flags else "replica"
            if "fail" in flags:
                role += ",fail"
            ranges = []
            for spec in parts[8:]:
                if spec.startswith("["):
                    continue  # a slot being migrated or imported
                low, _, high = spec.partition("-")
                ranges.append((int(low), int(high or low)))
            rows.append((node_id, address, role, ranges))
        return rows

    def primary_of(self, slot: int) -> ClusterNode:
        for _id, address, role, ranges in self.topology():
            if role == "primary" and any(low <= slot <= high for low, high in ranges):
                return next(node for node in self.nodes if node.address == address)
        raise LookupError(f"no primary serves slot {slot}")

    def shard_numsub(self, name: str) -> int:
        """How many connections are subscribed to the shard channel ``name`` on its owner."""
        live = next(node for node in self.nodes if node.alive)
        owner = self.primary_of(int(live.cli("CLUSTER", "KEYSLOT", name)))
        reply = owner.cli("PUBSUB", "SHARDNUMSUB", name).split()
        return int(reply[1])

    def node_id(self, node: ClusterNode) -> str:
        return node.cli("CLUSTER", "MYID").strip()

    def kill(self, node: ClusterNode) -> None:
        """``kill -9`` one node (its replica takes over after the node timeout)."""
        if node.process is not None and node.process.poll() is None:
            node.process.kill()
            node.process.wait(timeout=10)

    def wait_failover(self, slot: int, old: ClusterNode, timeout: float = READY_TIMEOUT) -> None:
        """Until another node is primary for ``slot`` and the cluster is whole again."""

        def moved() -> bool:
            return self.primary_of(slot).address != old.address

        self._wait(moved, f"failover of slot {slot}", timeout)
        self.wait_healthy(timeout)

    def reshard(self, source: ClusterNode, target: ClusterNode, slots: int) -> None:
        """Move ``slots`` slots from ``source`` to ``target`` (``redis-cli --cluster reshard``)."""
        live = next(node for node in self.nodes if node.alive)
        subprocess.run(
            [
                redis_cli(),
                "--cluster",
                "reshard",
                live.address,
                "--cluster-from",
                self.node_id(source),
                "--cluster-to",
                self.node_id(target),
                "--cluster-slots",
                str(slots),
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=READY_TIMEOUT,
            check=True,
        )
        self.wait_healthy()

    def stop(self) -> None:
        for node in self.nodes:
            self.kill(node)
        self.nodes = []
