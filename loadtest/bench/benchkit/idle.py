"""S3 idle connections: many authenticated sockets on one node doing nothing.

Reports how fast they open (a socket counts once the server has authenticated it) and how
much resident memory the node grows by per connection that is still open after settling.
"""

import asyncio
import time
from typing import Any

from .client import Sink, close_all, open_many
from .procs import own_cpu_s
from .targets import Context, Target, running
from .tokens import mint

MIB = 1024 * 1024


async def idle(target: Target, ctx: Context) -> dict[str, Any]:
    """Open the plan's idle connections against a fresh node and measure it."""
    plan = ctx.plan
    count = plan.idle_connections
    tokens = mint(ctx.secret, "bench-idle-", count)
    async with running(target, 1, ctx, "s3") as cluster:
        await asyncio.sleep(plan.settle_s)
        rss_before = cluster.server_rss_bytes()
        sink = Sink()
        started, server_cpu, client_cpu = time.monotonic(), cluster.server_cpu_s(), own_cpu_s()
        conns, errors = await open_many(
            target.wire, cluster.ports[0], tokens, sink, plan.open_concurrency
        )
        seconds = time.monotonic() - started
        server_cpu = cluster.server_cpu_s() - server_cpu
        client_cpu = own_cpu_s() - client_cpu
        try:
            await asyncio.sleep(plan.settle_s)
            alive = sum(not conn.closed for conn in conns)
            rss_after = cluster.server_rss_bytes()
            cluster.check_alive()
        finally:
            close_all(conns)
    return {
        "connections": count,
        "opened": len(conns),
        "failed": len(errors),
        "first_errors": sorted(set(errors))[:3],
        "alive_after_settle": alive,
        "open_seconds": round(seconds, 3),
        "opens_per_s": len(conns) / seconds,
        "server_cpu_pct_while_opening": 100 * server_cpu / seconds,
        "client_cpu_pct_while_opening": 100 * client_cpu / seconds,
        "rss_before_mib": rss_before / MIB,
        "rss_after_mib": rss_after / MIB,
        "kib_per_connection": (rss_after - rss_before) / 1024 / alive if alive else None,
        "notes": list(sink.notes),
    }
