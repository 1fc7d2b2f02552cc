"""Bystander latency while Redis is frozen (issue 21, item 7): the circuit breaker at work.

    PYTHONPATH=. .venv/bin/python -m loadtest.attacks.redis_freeze [--phase 3] [--rate 50]

Starts a private redis-server and two gateway processes sharing it (``tests/support/servers.py``),
both with publishes rate-limited (a roomy limit: what is measured is the wait for Redis, not the
limit), so every publish asks Redis for its token bucket first:

- *breaker*: the default breaker (``MOOSIC_REDIS_BREAKER_FAILURES`` 5, ``..._COOLDOWN`` 2 s);
- *no breaker*: ``MOOSIC_REDIS_BREAKER_FAILURES`` 10000, i.e. the breaker never opens in this
  run, which is how the node behaved before the breaker.

On the breaker node a talker publishes ``--rate`` messages a second to a bystander's room (both
on that node: with Redis frozen only local delivery exists) for ``--phase`` seconds, first with
Redis running, then right after SIGSTOP (the breaker trips during this phase: the first checks
wait out the limiter's 1 s timeout), then again with the breaker already open, then after
SIGCONT once the breaker has closed. The bystander's delivery latency (talker's send to
bystander's receive, one clock) is printed as p50/p99/max per phase with the ratio to the quiet
phase. While frozen, the no-breaker node answers ``--serial`` publishes sent one after the other
(each waits out the timeout) and one ``subscribe``; their per-op times and the breaker node's
``subscribe``/``watch_presence`` answer times are printed too. Bounded: about 40 s with the
defaults; it gives up past 60 s. Redis is always resumed and killed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.attacks.bystander import latencies as bystander_latencies
from loadtest.attacks.bystander import percentile, token
from tests.support.clients import WsClient
from tests.support.servers import GatewayNode, RedisServer, node_env

DEADLINE = 60.0
Row = tuple[str, float, float, float, int, int]
"""phase, p50, p99, max (ms), messages delivered, messages sent."""


async def gauge(http: aiohttp.ClientSession, node: GatewayNode, name: str) -> float:
    async with http.get(node.base_url + "/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split(" ", 1)[1])
    raise LookupError(name)


async def wait_state(http: aiohttp.ClientSession, node: GatewayNode, state: int) -> float:
    """Seconds until ``moosic_redis_circuit_state`` reads ``state`` (polled every 50 ms)."""
    began = time.monotonic()
    while True:
        if await gauge(http, node, "moosic_redis_circuit_state") == state:
            return time.monotonic() - began
        await asyncio.sleep(0.05)


async def measure(talker: WsClient, bystander: WsClient, room: str, label: str, args: Any) -> Row:
    """A talker's ``--rate``/s publishes for ``--phase`` s; the bystander's delivery latencies."""
    count = int(args.phase * args.rate)
    latencies = await bystander_latencies(talker, bystander, room, phase=args.phase, rate=args.rate)
    return (
        label,
        percentile(latencies, 50),
        percentile(latencies, 99),
        max(latencies),
        len(latencies),
        count,
    )


async def timed(client: WsClient, op: str, **fields: Any) -> tuple[str, float]:
    """One op's answer (``reply`` or the error code) and how long it took, in ms."""
    began = time.perf_counter()
    frame = await client.call(op, **fields)
    answer = "reply" if frame["op"] == "reply" else str(frame.get("code"))
    return answer, (time.perf_counter() - began) * 1000


async def run(redis: RedisServer, breaker: GatewayNode, plain: GatewayNode, args: Any) -> None:
    assert redis.process is not None
    stamp = time.time_ns()
    room = f"room:freeze-{stamp}"
    async with aiohttp.ClientSession() as http:
        url = breaker.base_url + "/ws"
        bystander = await WsClient.connect(http, token(f"bystander-{stamp}"), url)
        talker = await WsClient.connect(http, token(f"talker-{stamp}"), url)
        asker = await WsClient.connect(http, token(f"asker-{stamp}"), url)
        serial = await WsClient.connect(http, token(f"serial-{stamp}"), plain.base_url + "/ws")
        slow_asker = await WsClient.connect(http, token(f"slow-{stamp}"), plain.base_url + "/ws")
        await bystander.result("subscribe", channel=room)
        await serial.result("subscribe", channel=room + "-plain")
        rows = [await measure(talker, bystander, room, "Redis running", args)]

        redis.process.send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:

            async def without_breaker() -> tuple[list[tuple[str, float]], tuple[str, float]]:
                publishes = [
                    await timed(serial, "publish", channel=room + "-plain", data={"n": n})
                    for n in range(args.serial)
                ]
                return publishes, await timed(slow_asker, "subscribe", channel=room + "-new")

            other = asyncio.create_task(without_breaker())
            rows.append(await measure(talker, bystander, room, "frozen, tripping", args))
            opened = time.monotonic() - frozen_at
            await wait_state(http, breaker, 1)
            rows.append(await measure(talker, bystander, room, "frozen, circuit open", args))
            subscribe = await timed(asker, "subscribe", channel=room + "-new")
            watch = await timed(asker, "watch_presence", users=["someone"])
            plain_publishes, plain_subscribe = await other
            trips = await gauge(http, breaker, "moosic_redis_circuit_trips_total")
            rejected = await gauge(http, breaker, "moosic_redis_circuit_rejected_total")
        finally:
            redis.process.send_signal(signal.SIGCONT)
        closed = await wait_state(http, breaker, 0)
        rows.append(await measure(talker, bystander, room, "after SIGCONT", args))
        for client in (bystander, talker, asker, serial, slow_asker):
            await client.close()

    print(
        f"bystander delivery latency on the breaker node, {args.rate:g} publishes/s for "
        f"{args.phase:g} s per phase (publish rate-limited through Redis)"
    )
    base50, base99 = rows[0][1], rows[0][2]
    print(f"{'phase':22} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'p50 x':>7} {'p99 x':>7}  got")
    for label, p50, p99, top, got, sent in rows:
        print(
            f"{label:22} {p50:8.2f} {p99:8.2f} {top:8.1f} {p50 / base50:7.2f} {p99 / base99:7.2f}"
            f"  {got}/{sent}"
        )
    print(
        f"breaker node: circuit open {opened:.1f} s after SIGSTOP at the latest (end of the "
        f"tripping phase), {trips:g} trips, {rejected:g} calls refused at once; closed "
        f"{closed:.2f} s after SIGCONT"
    )
    print(
        f"breaker node, circuit open: subscribe -> {subscribe[0]} in {subscribe[1]:.1f} ms, "
        f"watch_presence -> {watch[0]} in {watch[1]:.1f} ms"
    )
    times = [ms for _, ms in plain_publishes]
    print(
        f"no-breaker node, frozen: {len(times)} publishes one after the other -> "
        f"{sorted({a for a, _ in plain_publishes})}, ms each {[round(ms) for ms in times]} "
        f"({len(times) / (sum(times) / 1000):.2f} ops/s); subscribe -> {plain_subscribe[0]} "
        f"in {plain_subscribe[1]:.0f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", type=float, default=3.0, help="seconds measured per phase")
    parser.add_argument("--rate", type=float, default=50.0, help="talker's publishes a second")
    parser.add_argument(
        "--serial", type=int, default=5, help="publishes sent one by one to the no-breaker node"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="redis-freeze-"))
    began = time.monotonic()
    redis = RedisServer(work / "redis").start()
    nodes: list[GatewayNode] = []
    try:
        limits = {"MOOSIC_RATE_LIMITS": "publish=100000/10s"}
        env = node_env(redis, work, **limits)
        breaker = GatewayNode(env, work / "breaker.log").start()
        nodes.append(breaker)
        plain = GatewayNode(
            {**env, "MOOSIC_REDIS_BREAKER_FAILURES": "10000"}, work / "plain.log"
        ).start()
        nodes.append(plain)

        async def everything() -> None:
            async with asyncio.timeout(DEADLINE - (time.monotonic() - began)):
                await run(redis, breaker, plain, args)

        asyncio.run(everything())
    finally:
        if redis.process is not None and redis.process.poll() is None:
            redis.process.send_signal(signal.SIGCONT)
        for node in nodes:
            node.stop()
        redis.stop()
    print(f"({time.monotonic() - began:.1f} s in all; logs in {work})")
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    sys.exit(main())
