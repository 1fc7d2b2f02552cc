"""What a publish costs across regions: the sender's ack, local vs forwarded to the home (issue 20).

    PYTHONPATH=. .venv/bin/python -m loadtest.regions_latency [--messages 100] [--delay 0.08]

Starts two regions on loopback (``tests/support/regions.py``: each its own redis-server, gateway
process and SQLite file), linked through the delay proxy (``--delay`` seconds one way). Alice
signs up in ``kh``, Bob in ``au``; their DM's home is the region of the lower user id. Then, one
publish at a time (``--messages`` each, after 10 unmeasured), from one socket per user:

- **local**: the user abroad publishes to a room homed in their own region (no cross-region
  trip), and the user at home publishes to the DM (local for them);
- **forwarded**: the user abroad publishes to the DM (forwarded to the home, acked with the
  home's offset);
- **delivery abroad**: a publish at home until its event reaches the user abroad's socket
  (through the relay);
- **link round trip**: an HTTP request through the proxy to the home's server API port, which
  answers 404 at once (the floor any forwarded call pays).

It prints p50/p90 of each in ms, and the ratios that matter: forwarded ack / local ack, and
(forwarded ack - local ack) / link round trip, which should be about 1 (one round trip to the
home). Figures depend on the machine: compare them within one run only. Bounded: it gives up
after 600 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from tests.support.clients import WsClient, register
from tests.support.regions import Regions, running_regions

WARMUP = 10


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def acks(conn: WsClient, channel: str, count: int) -> list[float]:
    took = []
    for n in range(WARMUP + count):
        started = time.perf_counter()
        await conn.result("publish", channel=channel, data={"n": n})
        if n >= WARMUP:
            took.append(time.perf_counter() - started)
    return took


async def deliveries(writer: WsClient, reader: WsClient, channel: str, count: int) -> list[float]:
    took = []
    for n in range(WARMUP + count):
        started = time.perf_counter()
        await writer.send({"op": "publish", "channel": channel, "data": {"d": n}})
        while True:
            event = await reader.next_event()
            if event["data"] == {"d": n}:
                break
        if n >= WARMUP:
            took.append(time.perf_counter() - started)
    return took


async def link_rtts(http: aiohttp.ClientSession, url: str, count: int) -> list[float]:
    took = []
    for n in range(WARMUP + count):
        started = time.perf_counter()
        async with http.get(url + "/healthz") as response:
            await response.read()
        if n >= WARMUP:
            took.append(time.perf_counter() - started)
    return took


async def measure(regions: Regions, messages: int) -> dict[str, list[float]]:
    async with aiohttp.ClientSession() as http:
        alice = await register(http, "alice", base=regions["kh"].node.base_url)
        bob = await register(http, "bob", base=regions["au"].node.base_url)
        home = min(alice["user_id"], bob["user_id"]).rpartition("_")[2]
        away = "au" if home == "kh" else "kh"
        at_home, abroad = (alice, bob) if home == "kh" else (bob, alice)
        dm = "dm:" + ":".join(sorted([alice["user_id"], bob["user_id"]]))
        writer = await WsClient.connect(http, at_home["access_token"], url=regions[home].ws_url)
        far = await WsClient.connect(http, abroad["access_token"], url=regions[away].ws_url)
        reader = await WsClient.connect(http, abroad["access_token"], url=regions[away].ws_url)
        await reader.result("subscribe", channel=dm)
        results = {
            "local ack (abroad, room homed there)": await acks(far, f"room:{away}.bench", messages),
            "local ack (at home, the DM)": await acks(writer, dm, messages),
            "forwarded ack (abroad, the DM)": await acks(far, dm, messages),
            "delivery abroad (home publish to event)": await deliveries(
                writer, reader, dm, messages
            ),
            "link round trip (HTTP through the proxy)": await link_rtts(
                http, regions[home].proxy.url, messages
            ),
        }
        for conn in (writer, far, reader):
            await conn.close()
        return results


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--delay", type=float, default=0.08, help="seconds one way")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="moosic-regions-") as work:
        async with (
            asyncio.timeout(600),
            running_regions(Path(work), ["kh", "au"], delay=args.delay) as regions,
        ):
            results = await measure(regions, args.messages)
    print(f"two regions, {args.delay * 1000:g} ms one way, {args.messages} publishes each")
    print(f"{'what':<44} {'p50 ms':>8} {'p90 ms':>8}")
    for name, values in results.items():
        print(f"{name:<44} {pct(values, 0.5):>8.1f} {pct(values, 0.9):>8.1f}")
    local = statistics.median(results["local ack (abroad, room homed there)"])
    forwarded = statistics.median(results["forwarded ack (abroad, the DM)"])
    rtt = statistics.median(results["link round trip (HTTP through the proxy)"])
    print(f"forwarded ack / local ack (p50): {forwarded / local:.1f}")
    print(f"(forwarded ack - local ack) / link round trip (p50): {(forwarded - local) / rtt:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
