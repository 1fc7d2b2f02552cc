"""A clickstream flood beside chat: a bystander's delivery latency with and without it (issue 15).

    PYTHONPATH=. .venv/bin/python -m loadtest.clickstream_flood [--users 5000] [--events 20]

Starts a redis-server and two gateway processes on loopback sharing it and one SQLite file
(``tests/support/servers.py``), with the default file sink and a clickstream buffer of
``--buffer`` events per node. On node A a talker publishes ``--rate`` messages a second to a
room a bystander on node B is subscribed to (so every message crosses Redis): first for
``--phase`` seconds with no flood, then for as long as the flood lasts. The flood runs in its
own process: ``--users`` users each send ``--events`` events (views, watch progress, view
ends, likes, shares) in one ``POST /v1/events``, half to each node, ``--concurrency`` requests
in flight per node; items refused with ``server_busy`` are sent again after a short pause
(``retryable``), so in the end every event is taken once.

Printed: the bystander's p50/p99 per phase and their ratio to the quiet phase (the issue's
target: within 2x), the flood's events per second, and per node the events accepted, refused
because the buffer was full, written, and the buffer's peak as sampled every 50 ms from
``/metrics`` in both phases (the bound must hold: never above ``--buffer``). Bounded: it gives up past 180 s.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.synchronize
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.attacks.bystander import percentile, token
from tests.support.clients import WsClient
from tests.support.servers import GatewayNode, RedisServer, node_env

DEADLINE = 180.0
KINDS = ("view_start", "watch_progress", "watch_progress", "view_end", "like", "share")


def events_of(user: int, count: int, videos: list[str]) -> list[dict[str, Any]]:
    """``count`` events of one user, cycling through the kinds over the videos."""
    now = int(time.time() * 1000)
    out = []
    for n in range(count):
        kind = KINDS[n % len(KINDS)]
        item: dict[str, Any] = {
            "type": kind,
            "event_id": f"u{user}-{n}",
            "client_ts": now,
            "video_id": videos[(user + n) % len(videos)],
        }
        if kind in ("watch_progress", "view_end"):
            item["seconds_watched"] = 5.0
        if kind == "share":
            item["target"] = "external"
        out.append(item)
    return out


# -- the flood, in its own process ------------------------------------------------------------


async def flood(urls: list[str], args: Any) -> tuple[int, int, float]:
    """Send every user's batch; resend refused items until taken. Returns (events taken,
    server_busy refusals met, seconds)."""
    taken = busy = 0
    began = time.monotonic()
    connectors = [aiohttp.TCPConnector(limit=args.concurrency) for _ in urls]
    sessions = [aiohttp.ClientSession(connector=c) for c in connectors]
    slots = [asyncio.Semaphore(args.concurrency) for _ in urls]

    async def send(user: int) -> None:
        nonlocal taken, busy
        if args.flood_rate:  # open loop: user n's batch is due at n * events / rate
            await asyncio.sleep(
                max(0.0, began + user * args.events / args.flood_rate - time.monotonic())
            )
        side = user % len(urls)
        headers = {"Authorization": f"Bearer {token(f'fan{user}')}"}
        batch = events_of(user, args.events, args.video_ids)
        while batch:
            async with (
                slots[side],
                sessions[side].post(
                    urls[side] + "/v1/events", json={"events": batch}, headers=headers
                ) as response,
            ):
                body = await response.json()
            if response.status == 503:  # the whole batch refused: the buffer was full
                busy += len(batch)
                await asyncio.sleep(0.05)
                continue
            assert response.status == 200, body
            taken += body["accepted"] + body["duplicates"]
            again = {r["index"] for r in body["refused"] if r["code"] == "server_busy"}
            assert len(again) == len(body["refused"]), body["refused"][:3]
            busy += len(again)
            batch = [e for i, e in enumerate(batch) if i in again]
            if batch:
                await asyncio.sleep(0.05)

    try:
        await asyncio.gather(*(send(user) for user in range(args.users)))
    finally:
        for session in sessions:
            await session.close()
    return taken, busy, time.monotonic() - began


def flood_process(
    urls: list[str],
    args: Any,
    started: multiprocessing.synchronize.Event,
    results: multiprocessing.Queue[tuple[int, int, float] | str],
) -> None:
    started.set()
    try:
        results.put(asyncio.run(flood(urls, args)))
    except BaseException as exc:
        results.put(f"the flood failed: {exc!r}")
        raise


# -- the bystander ----------------------------------------------------------------------------


async def measure(
    talker: WsClient, bystander: WsClient, room: str, rate: float, until: Any
) -> list[float]:
    """The talker publishes ``rate``/s until ``until()`` is true; latencies (ms) of each."""
    sent = 0
    heard: list[float] = []
    done = False

    async def hear() -> None:
        while not done or len(heard) < sent:
            frame = await bystander.next_event(timeout=30)
            heard.append((time.monotonic_ns() - frame["data"]["t"]) / 1e6)

    async def replies() -> None:
        answered = 0
        while not done or answered < sent:
            frame = await talker.receive(timeout=30)
            assert frame["op"] == "reply", frame
            answered += 1

    listening = asyncio.gather(hear(), replies())
    start = time.monotonic()
    while not until():
        await asyncio.sleep(max(0.0, start + sent / rate - time.monotonic()))
        await talker.send(
            {"op": "publish", "channel": room, "data": {"t": time.monotonic_ns(), "n": sent}}
        )
        sent += 1
    done = True
    await asyncio.wait_for(listening, 30)
    return heard


async def metric(http: aiohttp.ClientSession, node: GatewayNode, name: str) -> float:
    async with http.get(node.base_url + "/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


async def run(nodes: list[GatewayNode], args: Any) -> None:
    a, b = nodes
    context = multiprocessing.get_context("spawn")
    async with aiohttp.ClientSession() as http:
        maker = {"Authorization": f"Bearer {token('maker')}"}
        args.video_ids = []
        for n in range(args.videos):  # real, ready videos: the views reach their totals
            async with http.post(
                a.base_url + "/v1/videos", json={"title": f"clip {n}"}, headers=maker
            ) as response:
                assert response.status == 201, await response.text()
                args.video_ids.append((await response.json())["video_id"])
        room = f"room:bystander-{time.time_ns()}"
        talker = await WsClient.connect(http, token("talker"), a.base_url + "/ws")
        bystander = await WsClient.connect(http, token("bystander"), b.base_url + "/ws")
        await bystander.result("subscribe", channel=room)
        # The buffers' sampler runs in both phases, so its scrapes weigh on both alike.
        peaks = [0.0, 0.0]
        sampling = True

        async def sample() -> None:
            while sampling:
                for i, node in enumerate(nodes):
                    peaks[i] = max(
                        peaks[i], await metric(http, node, "moosic_clickstream_buffered")
                    )
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        quiet_end = time.monotonic() + args.phase
        quiet = await measure(
            talker, bystander, room, args.rate, lambda: time.monotonic() > quiet_end
        )

        started = context.Event()
        results: multiprocessing.Queue[tuple[int, int, float] | str] = context.Queue()
        process = context.Process(
            target=flood_process,
            args=([a.base_url, b.base_url], args, started, results),
            daemon=True,
        )
        process.start()
        await asyncio.to_thread(started.wait, 30)
        flooded = await measure(talker, bystander, room, args.rate, lambda: not process.is_alive())
        sampling = False
        await sampler
        outcome = await asyncio.to_thread(results.get, True, 30)
        if isinstance(outcome, str):
            raise SystemExit(outcome)
        taken, busy, seconds = outcome
        await asyncio.to_thread(process.join, 10)
        await talker.close()
        await bystander.close()
        await asyncio.sleep(1.5)  # the buffers' last flush (interval 1 s)
        rows = []
        for i, node in enumerate(nodes):
            rows.append(
                (
                    "AB"[i],
                    await metric(http, node, "moosic_clickstream_events_accepted_total"),
                    await metric(http, node, "moosic_clickstream_events_refused_full_total"),
                    await metric(http, node, "moosic_clickstream_events_written_total"),
                    peaks[i],
                )
            )

    total = args.users * args.events
    q50, q99 = percentile(quiet, 50), percentile(quiet, 99)
    f50, f99 = percentile(flooded, 50), percentile(flooded, 99)
    print(
        f"flood: {args.users:,} users x {args.events} events = {total:,} events over two nodes "
        f"in {seconds:.2f} s ({total / seconds:,.0f} events/s); {taken:,} taken, "
        f"{busy:,} server_busy refusals resent"
    )
    print(f"bystander ({args.rate:g} messages/s, node A -> Redis -> node B):")
    print(f"  {'phase':10} {'messages':>8} {'p50 ms':>7} {'p99 ms':>7} {'p50 x':>6} {'p99 x':>6}")
    print(f"  {'quiet':10} {len(quiet):8} {q50:7.2f} {q99:7.2f} {1:6.2f} {1:6.2f}")
    print(
        f"  {'flood':10} {len(flooded):8} {f50:7.2f} {f99:7.2f} {f50 / q50:6.2f} {f99 / q99:6.2f}"
    )
    print(f"buffer bound {args.buffer:,} per node:")
    print(f"  {'node':4} {'accepted':>9} {'refused full':>12} {'written':>9} {'peak':>7}")
    for label, accepted, refused, written, peak in rows:
        print(f"  {label:4} {accepted:9,.0f} {refused:12,.0f} {written:9,.0f} {peak:7,.0f}")
    problems = []
    if taken != total:
        problems.append(f"{taken} of {total} events taken")
    if any(peak > args.buffer for *_, peak in rows):
        problems.append("a buffer went past its bound")
    if sum(r[3] for r in rows) != total:
        problems.append(f"{sum(r[3] for r in rows):.0f} events written, not {total}")
    if problems:
        raise SystemExit("FAILED: " + "; ".join(problems))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--events", type=int, default=20, help="events per user (one batch)")
    parser.add_argument("--videos", type=int, default=200, help="videos made, and watched")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight per node")
    parser.add_argument(
        "--flood-rate",
        type=float,
        default=20_000,
        help="events a second the users send in all (batches due on a schedule); 0: at once",
    )
    parser.add_argument("--buffer", type=int, default=20_000, help="MOOSIC_CLICKSTREAM_BUFFER")
    parser.add_argument("--phase", type=float, default=4.0, help="seconds of the quiet phase")
    parser.add_argument("--rate", type=float, default=100.0, help="talker's messages a second")
    parser.add_argument(
        "--rate-limits",
        default="track=1000/1m,publish=off,rest=off",
        help="MOOSIC_RATE_LIMITS of both nodes (every fan is one address: loopback)",
    )
    parser.add_argument(
        "--env", action="append", default=[], help="NAME=VALUE for both nodes (repeatable)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="clickstream-flood-"))
    redis = RedisServer(work / "redis")
    nodes: list[GatewayNode] = []
    try:
        redis.start()
        env = node_env(
            redis,
            work,
            MOOSIC_CLICKSTREAM_BUFFER=str(args.buffer),
            MOOSIC_CLICKSTREAM_FLUSH_EVENTS=str(min(5000, args.buffer)),
            MOOSIC_RATE_LIMITS=args.rate_limits,
            MOOSIC_HTTP_MAX_UNAUTHENTICATED_PER_ADDRESS=str(4 * args.concurrency),
            MOOSIC_SHUTDOWN_TIMEOUT="2",
            MOOSIC_VIDEO_READY_ON_CREATE="1",
            **dict(kv.split("=", 1) for kv in args.env),
        )
        for name in "ab":
            nodes.append(GatewayNode(env, work / f"{name}.log").start())
        asyncio.run(asyncio.wait_for(run(nodes, args), DEADLINE))
    finally:
        for node in nodes:
            node.stop()
        redis.stop()
    print(f"(files and logs in {work}; pid {os.getpid()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
