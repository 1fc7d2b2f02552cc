"""A frozen Redis (issue 21, item 7): the circuit breaker stops every op waiting on it.

Redis stopped with SIGSTOP keeps its sockets open: it answers nothing and refuses nothing. Before
the breaker, every rate-limited op waited out the limiter's 1 s timeout, one after the other
(about one op a second per connection), and subscriptions and presence waited out the broker's
5 s. Over real processes (a private redis-server, two gateway nodes sharing it), this freezes
Redis and checks, by counts and codes only:

- every one of a burst of rate-limited ops sent back to back from one client is answered
  (``publish`` and ``like`` replies: the limiter falls back to the node's own buckets);
- ``/metrics`` shows the circuit open (``moosic_redis_circuit_state`` 1) and at least one trip;
- once it is open, every op of a second burst is refused by the breaker without reaching Redis
  (the half-open probe is the broker's own ``PING``, never a client's op);
- ``subscribe`` to a new channel and ``watch_presence`` answer ``unavailable`` once it is open;
- after SIGCONT the breaker closes again and a publish on one node reaches the other.

Per-op latency while frozen is printed (a figure, never asserted); see
``loadtest/attacks/redis_freeze.py`` for a bystander's latency with and without the freeze.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.test_ws import token_for
from tests.support.clients import WsClient
from tests.support.servers import GatewayNode, RedisServer, node_env

OPS = 50
"""Rate-limited ops sent back to back while Redis is frozen (of each kind)."""
WAIT = 60.0
"""Generous bound on every wait for a state (seconds); never a measured figure."""
CLOSED, OPEN = 0, 1
FAILURES = 5
"""MOOSIC_REDIS_BREAKER_FAILURES of both nodes."""


@pytest.fixture
def frozen_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server (the session's one must not be stopped); always resumed, killed."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.process.send_signal(signal.SIGCONT)
        server.stop()


async def metrics(http: aiohttp.ClientSession, node: GatewayNode) -> dict[str, float]:
    async with http.get(node.base_url + "/metrics") as response:
        text = await response.text()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("moosic_") and " " in line:
            name, value = line.split(" ", 1)
            found[name] = float(value)
    return found


async def poll_state(http: aiohttp.ClientSession, node: GatewayNode, state: int) -> None:
    async with asyncio.timeout(WAIT):
        while (await metrics(http, node))["moosic_redis_circuit_state"] != state:
            await asyncio.sleep(0.1)


async def ready(http: aiohttp.ClientSession, node: GatewayNode) -> bool:
    async with http.get(node.base_url + "/readyz") as response:
        return response.status == 200


async def burst(
    client: WsClient, op: str, count: int, **fields: object
) -> list[tuple[dict[str, object], float]]:
    """Send ``count`` ops one after the other (each as soon as the last is answered)."""
    answers = []
    for n in range(count):
        began = time.perf_counter()
        frame = await client.call(
            op, **{k: (f"{v}{n}" if k == "text" else v) for k, v in fields.items()}
        )
        answers.append((frame, (time.perf_counter() - began) * 1000))
    return answers


def report(label: str, answers: list[tuple[dict[str, object], float]]) -> None:
    """Print (never assert) the burst's latencies: the first few waited for Redis, then none."""
    ms = [latency for _, latency in answers]
    ranked = sorted(ms)
    line = (
        f"{label}: {len(ms)} ops back to back while Redis is frozen; ms p50 "
        f"{statistics.median(ms):.1f}, p99 {ranked[round(len(ms) * 0.99) - 1]:.1f}, "
        f"max {ranked[-1]:.1f}, first {FAILURES + 1}: {[round(x, 1) for x in ms[: FAILURES + 1]]}, "
        f"sum {sum(ms) / 1000:.2f} s"
    )
    print("\n" + line)  # noqa: T201


async def test_a_frozen_redis_trips_the_breaker_and_ops_are_answered_at_once(
    frozen_redis: RedisServer, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    env = node_env(
        frozen_redis,
        tmp_path,
        # Publishes rate-limited again (GatewayNode turns that limit off), roomy enough for
        # the bursts: what is measured is the wait for Redis, not the limit.
        MOOSIC_RATE_LIMITS=f"publish={OPS * 10}/40s",
        MOOSIC_REDIS_BREAKER_FAILURES=str(FAILURES),
        MOOSIC_REDIS_BREAKER_COOLDOWN="2",
    )
    a = GatewayNode(env, tmp_path / "a.log").start()
    b = GatewayNode(env, tmp_path / "b.log").start()
    clients: list[WsClient] = []
    try:
        talker = await WsClient.connect(http, token_for("talker"), a.base_url + "/ws")
        listener = await WsClient.connect(http, token_for("listener"), b.base_url + "/ws")
        clients += [talker, listener]
        await listener.result("subscribe", channel="room:freeze")
        await talker.result("subscribe", channel="room:freeze")
        # Before: fan-out across the two nodes works.
        await talker.result("publish", channel="room:freeze", data={"n": "before"})
        assert (await listener.next_event())["data"] == {"n": "before"}
        before = await metrics(http, a)
        assert before["moosic_redis_circuit_state"] == CLOSED

        assert frozen_redis.process is not None
        frozen_redis.process.send_signal(signal.SIGSTOP)

        published = await burst(talker, "publish", OPS, channel="room:freeze", data={"x": 1})
        report("publish", published)
        # Every one answered, and answered with a reply: the limiter used the node's buckets.
        assert [frame["op"] for frame, _ in published] == ["reply"] * OPS, published
        await poll_state(http, a, OPEN)
        during = await metrics(http, a)
        trips = (
            during["moosic_redis_circuit_trips_total"] - before["moosic_redis_circuit_trips_total"]
        )
        rejected = (
            during["moosic_redis_circuit_rejected_total"]
            - before["moosic_redis_circuit_rejected_total"]
        )
        fallbacks = (
            during["moosic_rate_limit_fallbacks_total"]
            - before["moosic_rate_limit_fallbacks_total"]
        )
        assert trips >= 1
        assert fallbacks >= OPS
        # Of the burst, at most FAILURES ops reached Redis before the first trip, and one
        # probe per later trip: every other one was refused without waiting.
        assert rejected >= OPS - FAILURES - (trips - 1), (rejected, trips)

        # Once open, no op goes to Redis at all: the probe is the broker's own PING, so each
        # of a second burst is refused by the breaker (and answered from the local buckets).
        again = await burst(talker, "publish", OPS, channel="room:freeze", data={"x": 2})
        report("publish, circuit open", again)
        assert [frame["op"] for frame, _ in again] == ["reply"] * OPS, again
        after = await metrics(http, a)
        refused = (
            after["moosic_redis_circuit_rejected_total"]
            - during["moosic_redis_circuit_rejected_total"]
        )
        assert refused >= OPS, refused
        assert (
            after["moosic_rate_limit_fallbacks_total"] - during["moosic_rate_limit_fallbacks_total"]
            >= OPS
        )

        # Subscriptions and presence say so at once rather than after the broker's timeout.
        subscribed = await talker.call("subscribe", channel="room:freeze-new")
        assert (subscribed["op"], subscribed["code"]) == ("error", "unavailable"), subscribed
        watched = await talker.call("watch_presence", users=["someone"])
        assert (watched["op"], watched["code"]) == ("error", "unavailable"), watched

        frozen_redis.process.send_signal(signal.SIGCONT)
        # Readiness pings go through the breaker: its probe finds Redis and closes it.
        async with asyncio.timeout(WAIT):
            while not (await ready(http, a) and await ready(http, b)):
                await asyncio.sleep(0.2)
        await poll_state(http, a, CLOSED)
        await poll_state(http, b, CLOSED)
        await talker.result("publish", channel="room:freeze", data={"n": "after"})
        async with asyncio.timeout(WAIT):
            while (await listener.next_event(WAIT))["data"] != {"n": "after"}:
                pass  # the burst's events, sent on once Redis resumed
        resumed = await talker.result("subscribe", channel="room:freeze-new")
        assert resumed["channel"] == "room:freeze-new"
    finally:
        for client in clients:
            await client.close()
        a.stop()
        b.stop()
