"""S1 fan-out and S2 cross-node: one publisher, N subscribers in one room.

S1 runs one node; S2 runs two nodes sharing Redis, subscribers on the first, publisher on the
second. The offered rate steps up (plan.RAMP_OFFERED) on one warm cluster. The step at the
plan's fixed rate is measured longer and gives the server CPU per delivery at the same load for
every target; up to that step the ramp goes on while the target keeps up. Past it, the ramp
stops at the first step that fell behind, passed the p99 limit, or saturated the load
generator's own core (beyond that it would measure the client). A target that cannot keep up
below the fixed rate reports its last step instead, marked as not kept up.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from .client import Conn, Sink, close_all, join_all, message, open_all, padding_for
from .errors import NotDeliveredError
from .measure import snap, window
from .pacing import Pacer
from .plan import RAMP_OFFERED, Plan
from .targets import Cluster, Context, Target, running
from .tokens import mint

CHANNEL = "room:bench"
PRIME_TIMEOUT_S = 10.0
KEEP_UP_SHARE = 0.9
"""A step whose deliveries/s fall below this share of the offered rate has saturated."""


@dataclass(frozen=True)
class Rig:
    """A cluster with subscribers joined and a publisher sending at `pacer.rate`."""

    cluster: Cluster
    sink: Sink
    pacer: Pacer
    subscribers: int


@asynccontextmanager
async def _rig(
    target: Target, nodes: int, ctx: Context, tag: str, limit_s: float
) -> AsyncIterator[Rig]:
    plan = ctx.plan
    count = plan.fanout_subscribers
    async with running(target, nodes, ctx, tag) as cluster:
        sink = Sink()
        conns: list[Conn] = []
        pacer: Pacer | None = None
        try:
            conns += await open_all(
                target.wire,
                cluster.ports[0],
                mint(ctx.secret, "bench-sub-", count),
                sink,
                plan.open_concurrency,
            )
            await join_all(conns, lambda _conn: CHANNEL, plan.open_concurrency)
            publisher = (
                await open_all(
                    target.wire,
                    cluster.ports[-1],
                    mint(ctx.secret, "bench-pub-", 1),
                    sink,
                    1,
                    start_index=count,
                )
            )[0]
            conns.append(publisher)
            padding = padding_for(plan.message_bytes)
            await _prime(publisher, sink, count, padding)
            pacer = Pacer(
                lambda: publisher.publish(CHANNEL, message(publisher.index, padding)), limit_s
            )
            pacer.start()
            yield Rig(cluster, sink, pacer, count)
        finally:
            if pacer is not None:
                await pacer.stop()
            close_all(conns)


async def _prime(publisher: Conn, sink: Sink, subscribers: int, padding: bytes) -> None:
    """Publish one message and wait until every subscriber has it (subscriptions are live)."""
    publisher.publish(CHANNEL, message(publisher.index, padding))
    deadline = time.monotonic() + PRIME_TIMEOUT_S
    while sink.delivered < subscribers:
        if time.monotonic() > deadline:
            raise NotDeliveredError(sink.delivered, subscribers, sink.notes)
        await asyncio.sleep(0.05)


async def _measure(rig: Rig, seconds: float) -> dict[str, Any]:
    start = snap(rig.cluster, rig.sink)
    rig.sink.start_recording()
    await asyncio.sleep(seconds)
    end = snap(rig.cluster, rig.sink)
    latencies = rig.sink.stop_recording()
    rig.cluster.check_alive()
    return window(start, end, latencies)


async def _ramp(target: Target, nodes: int, ctx: Context, tag: str) -> list[dict[str, Any]]:
    plan = ctx.plan
    limit_s = len(RAMP_OFFERED) * (plan.warmup_s + plan.step_s) + plan.fixed_step_s + 30
    steps: list[dict[str, Any]] = []
    async with _rig(target, nodes, ctx, tag, limit_s) as rig:
        for offered in RAMP_OFFERED:
            rig.pacer.rate = offered / rig.subscribers
            await asyncio.sleep(plan.warmup_s)
            seconds = plan.fixed_step_s if offered == plan.fixed_offered else plan.step_s
            step = {"offered_per_s": offered, **await _measure(rig, seconds)}
            steps.append(step)
            if _last_step(step, plan):
                break
        if rig.sink.notes:
            steps[-1]["notes"] = list(rig.sink.notes)
    return steps


def _last_step(step: dict[str, Any], plan: Plan) -> bool:
    """Whether the ramp ends at this step (see the module docstring)."""
    if step["client_bound"] or step["deliveries_per_s"] < KEEP_UP_SHARE * step["offered_per_s"]:
        return True
    if step["offered_per_s"] < plan.fixed_offered:
        return False
    return step["p99_ms"] is None or step["p99_ms"] > plan.p99_limit_ms


def _best(steps: list[dict[str, Any]], p99_limit_ms: float) -> dict[str, Any]:
    within = [s for s in steps if s["p99_ms"] is not None and s["p99_ms"] <= p99_limit_ms]
    best = max(within or steps, key=lambda step: float(step["deliveries_per_s"]))
    return {**best, "within_p99_limit": bool(within)}


def _fixed(steps: list[dict[str, Any]], plan: Plan) -> dict[str, Any]:
    step = next((s for s in steps if s["offered_per_s"] == plan.fixed_offered), steps[-1])
    kept_up = (
        step["offered_per_s"] == plan.fixed_offered
        and step["deliveries_per_s"] >= KEEP_UP_SHARE * plan.fixed_offered
    )
    return {**step, "kept_up": kept_up}


async def fanout(target: Target, ctx: Context, nodes: int) -> dict[str, Any]:
    """Ramp the offered rate; report the fixed-rate step, the best step and every step."""
    steps = await _ramp(target, nodes, ctx, "s1" if nodes == 1 else "s2")
    return {
        "nodes": nodes,
        "subscribers": ctx.plan.fanout_subscribers,
        "message_bytes": ctx.plan.message_bytes,
        "fixed": _fixed(steps, ctx.plan),
        "max": _best(steps, ctx.plan.p99_limit_ms),
        "ramp": steps,
    }
