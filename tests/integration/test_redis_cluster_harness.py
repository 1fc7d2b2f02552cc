"""The Redis Cluster the cluster-mode tests stand on (issue 13): real, whole, and able to fail over.

The gateway's cluster mode is not built yet; this keeps the harness honest until it is: six real
``redis-server`` processes serve all 16384 slots, a ``kill -9`` of a primary promotes its replica,
and ``reshard`` moves slots between primaries.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.redis_cluster import RedisCluster

SLOT = 0


def test_a_cluster_serves_every_slot_fails_over_and_reshards(tmp_path: Path) -> None:
    cluster = RedisCluster(tmp_path).start()
    try:
        roles = sorted(role for _id, _address, role, _ranges in cluster.topology())
        assert roles == ["primary"] * 3 + ["replica"] * 3
        served = sum(
            high - low + 1
            for _id, _address, role, ranges in cluster.topology()
            if role == "primary"
            for low, high in ranges
        )
        assert served == 16384

        old = cluster.primary_of(SLOT)
        cluster.kill(old)
        cluster.wait_failover(SLOT, old)
        assert cluster.primary_of(SLOT).address != old.address

        source, target = cluster.primary_of(16000), cluster.primary_of(SLOT)
        before = cluster.primary_of(16383).address
        cluster.reshard(source, target, 10)
        held = {address: ranges for _id, address, role, ranges in cluster.topology()}
        assert sum(high - low + 1 for low, high in held[target.address]) == 5461 + 10
        assert cluster.primary_of(16383).address == before  # the source keeps its highest slots
    finally:
        cluster.stop()
