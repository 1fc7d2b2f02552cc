"""The home feed's fan-out, measured: time to reach every online follower, event-loop lag.

    PYTHONPATH=. .venv/bin/python loadtest/feed_bench.py [--followers 5000] [--online 1000]
        [--posts 5] [--threshold 10000]

Starts its own ``redis-server`` and two gateway processes on loopback (one shared SQLite file),
seeds ``--followers`` follow edges through the store, opens ``--online`` follower sockets (half
on each node, each subscribed to its ``user:`` channel), then has the author post ``--posts``
videos on node A, one at a time. For each post it reports:

- **answer**: how long ``POST /v1/videos`` took (the fan-out runs after it);
- **reach**: time from sending the POST to the last online follower's ``feed`` push;
- **lag**: how late a 5 ms timer fired on node A while the fan-out ran (node A's own event
  loop, read from a probe that pings ``GET /healthz`` every 5 ms: the probe's round trip minus
  its idle round trip), max and p99;
- node A's ``moosic_feed_longest_batch_seconds`` (the longest time one batch's publish loop held
  the event loop, measured in the gateway).

``--threshold`` below ``--followers`` measures the fan-out-on-read path (no feed writes, only
pushes). Uses the test suite's process harness (``tests/support``), hence ``PYTHONPATH=.``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import jwt
import uvloop

from storage.sqlite import SQLiteStore
from tests.support.flood import FloodSocket, request
from tests.support.servers import GatewayNode, RedisServer

SECRET = "feed-bench-secret-" + "x" * 32
PROBE_INTERVAL = 0.005


def token(user: str) -> str:
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + 3600, "iss": "moosic", "aud": "moosic"}
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def probe(url: str) -> None:
    """Print ``monotonic round-trip`` of ``GET /healthz`` every PROBE_INTERVAL, for ever.

    Runs in its own process, so the bench's 1,000 sockets do not delay its measurements;
    CLOCK_MONOTONIC is one clock for every process of the machine.
    """
    async with aiohttp.ClientSession() as session:
        while True:
            started = time.perf_counter()
            async with session.get(url + "/healthz") as response:
                await response.read()
            print(f"{time.monotonic():.6f} {time.perf_counter() - started:.6f}", flush=True)
            await asyncio.sleep(PROBE_INTERVAL)


class Probe:
    """The probe process and the samples it has printed so far."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.samples: list[tuple[float, float]] = []
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, url: str) -> Probe:
        process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--probe", url, stdout=asyncio.subprocess.PIPE
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            at, rtt = line.split()
            self.samples.append((float(at), float(rtt)))

    def between(self, start: float, end: float) -> list[float]:
        return [rtt for at, rtt in self.samples if start <= at <= end]

    async def stop(self) -> None:
        self.process.kill()
        await self.process.wait()
        self.reader.cancel()


async def gauge(session: aiohttp.ClientSession, url: str, name: str) -> float:
    async with session.get(url + "/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return float("nan")


async def run(args: argparse.Namespace, folder: Path) -> None:
    redis = RedisServer(folder / "redis").start()
    env = {
        "MOOSIC_DEV": "1",
        "MOOSIC_JWT_SECRET": SECRET,
        "MOOSIC_SQLITE_PATH": str(folder / "shared.db"),
        "MOOSIC_REDIS_URL": redis.url,
        "MOOSIC_REDIS_PREFIX": f"b{uuid.uuid4().hex[:8]}:",
        "MOOSIC_LOG_LEVEL": "WARNING",
        "MOOSIC_RATE_LIMITS": "off",
        "MOOSIC_HTTP_MAX_UNAUTHENTICATED_PER_ADDRESS": "0",  # every socket from one address
        "MOOSIC_VIDEO_READY_ON_CREATE": "1",
        "MOOSIC_FEED_FANOUT_THRESHOLD": str(args.threshold),
        "MOOSIC_MEDIA_DIR": str(folder / "media"),
    }
    nodes = [GatewayNode(env, folder / f"node-{n}.log").start() for n in ("a", "b")]
    sockets: list[FloodSocket] = []
    try:
        author = "author"
        followers = [f"fan{i:06d}" for i in range(args.followers)]
        store = SQLiteStore(folder / "shared.db")
        await store.open()
        for user in followers:
            await store.follow(user, author)
        await store.close()
        every = max(1, args.followers // args.online)
        online = followers[::every][: args.online]
        slots = asyncio.Semaphore(100)

        async def connect(index: int, user: str) -> FloodSocket:
            async with slots:
                node = nodes[index % 2]
                sock = await FloodSocket.open(
                    "127.0.0.1", node.port, token(user), keep=frozenset({"feed"})
                )
                sock.send(request("subscribe", 1, channel=f"user:{user}"))
                await sock.wait_replies(1)
                return sock

        sockets = list(await asyncio.gather(*(connect(i, u) for i, u in enumerate(online))))
        a = nodes[0].base_url
        headers = {"Authorization": f"Bearer {token(author)}"}
        print(
            f"followers {args.followers}, online {len(online)} over 2 nodes, "
            f"threshold {args.threshold} "
            f"({'fan-out on read' if args.followers > args.threshold else 'fan-out on write'})"
        )
        probe_process = await Probe.start(a)
        async with aiohttp.ClientSession() as session:
            await asyncio.sleep(1.5)
            idle = statistics.median(probe_process.between(0, time.monotonic()))
            print(f"idle /healthz round trip: {idle * 1000:.2f} ms (median)")
            for post in range(args.posts):
                already = sum(len(s.pushes) for s in sockets)
                started = time.monotonic()
                async with session.post(
                    a + "/v1/videos", json={"title": f"post {post}"}, headers=headers
                ) as response:
                    assert response.status == 201, await response.text()
                answered = time.monotonic()
                # Polled: the pushes land in protocol callbacks that set no event.
                while sum(len(s.pushes) for s in sockets) < already + len(sockets):  # noqa: ASYNC110
                    await asyncio.sleep(0.001)
                reached = max(s.pushes[-1][0] for s in sockets)
                while await gauge(session, a, "moosic_feed_fanouts_running") > 0:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                walk = await gauge(session, a, "moosic_feed_last_fanout_seconds")
                lags = sorted(
                    max(0.0, s - idle) for s in probe_process.between(started, started + walk)
                )
                p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else float("nan")
                batch = await gauge(session, a, "moosic_feed_longest_batch_seconds")
                print(
                    f"post {post}: answer {(answered - started) * 1000:.1f} ms, "
                    f"reach {(reached - started) * 1000:.0f} ms, "
                    f"whole fan-out {walk * 1000:.0f} ms, "
                    f"lag max {lags[-1] * 1000 if lags else float('nan'):.1f} ms "
                    f"p99 {p99 * 1000:.1f} ms ({len(lags)} probes), "
                    f"longest batch so far {batch * 1000:.1f} ms"
                )
                await asyncio.sleep(0.5)
        await probe_process.stop()
    finally:
        for sock in sockets:
            sock.close()
        for node in nodes:
            node.stop()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--followers", type=int, default=5000)
    parser.add_argument("--online", type=int, default=1000)
    parser.add_argument("--posts", type=int, default=5)
    parser.add_argument("--threshold", type=int, default=10_000)
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        uvloop.run(probe(args.probe))
        return
    with tempfile.TemporaryDirectory() as folder:
        uvloop.run(run(args, Path(folder)))


if __name__ == "__main__":
    main()
