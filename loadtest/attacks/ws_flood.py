"""Bystander latency under the WebSocket attacks of issue 21 (items 1 and 3).

    PYTHONPATH=. .venv/bin/python -m loadtest.attacks.ws_flood [--phase 4] [--rate 100]

Starts two gateway processes on loopback (``tests/support/servers.py``):

- *bound*: a 64 KiB outbound bound (``MOOSIC_WS_MAX_BACKLOG_BYTES``) and a frame budget lifted
  out of the way, for item 1: a socket that sends 125-byte pings and never reads its pongs
  (closed with 4001 once its unread pongs pass the bound);
- *budget*: the default frame budget (2,000 at once, 1,000 a second) with
  ``MOOSIC_WS_FLOOD_CLOSE_SECONDS`` cut to ``--flood-close`` (3 s) so each flood is closed within
  its phase, for item 3: ``ping`` op frames, zero-length continuations, empty pongs, empty text
  frames, each sent as fast as one process can (closed with 4502); and the pinger again, which
  at the default budget is cut by the budget (4502) before its pongs fill the socket buffers.

On each node a talker publishes ``--rate`` messages a second to a bystander's room for
``--phase`` seconds, first with no attack, then during each attack (the attacker runs in its own
process, started a moment before the phase). The bystander's delivery latency (talker's send
to bystander's receive, one clock) is printed as p50/p99 per phase with the ratio to the node's
quiet phase, the attacker's close code, and the frames it wrote to its socket (most wait in
the kernel's buffers, unread by the throttled node). Bounded: about 45 s with the
defaults, and it gives up past 90 s.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.synchronize
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
from tests.support.rawws import RawWebSocket
from tests.support.servers import TEST_JWT_SECRET, GatewayNode

TEXT, CONTINUATION, PING, PONG = 0x1, 0x0, 0x9, 0xA
CHUNK = 256
HEAD_START = 0.3
"""Seconds the attacker sends before the talker starts: the attack is in force when measured."""
DEADLINE = 90.0

ATTACKS: dict[str, tuple[bytes, bytes]] = {
    # name: (first bytes, the chunk sent over and over)
    "pings never read": (
        b"",
        b"".join(RawWebSocket.encode(PING, b"p" * 125) for _ in range(CHUNK)),
    ),
    "op frames": (
        b"",
        b"".join(RawWebSocket.encode(TEXT, b'{"op":"ping","id":1}') for _ in range(CHUNK)),
    ),
    "zero-length continuations": (
        RawWebSocket.encode(TEXT, b'{"op":"ping",', fin=False),
        b"".join(RawWebSocket.encode(CONTINUATION, b"", fin=False) for _ in range(CHUNK)),
    ),
    "empty pongs": (b"", b"".join(RawWebSocket.encode(PONG, b"") for _ in range(CHUNK))),
    "empty text frames": (b"", b"".join(RawWebSocket.encode(TEXT, b"") for _ in range(CHUNK))),
}


# -- the attacker, in its own process -----------------------------------------------------------


def attack(
    port: int,
    name: str,
    stop: multiprocessing.synchronize.Event,
    started: multiprocessing.synchronize.Event,
    results: multiprocessing.Queue[tuple[int, str, int]],
) -> None:
    """Send the attack's frames until ``stop``, reading nothing; then read the close frame."""
    first, chunk = ATTACKS[name]
    ws = RawWebSocket(
        "127.0.0.1", port, "/ws?token=" + token(f"attacker-{time.time_ns()}"), rcvbuf=4096
    )
    sent = 0
    code, reason = 0, ""
    try:
        for _ in ws.flood(first, chunk, stop.is_set):
            started.set()
            sent += CHUNK
        ws.sock.settimeout(10)
        code, reason, _ = ws.read_close()
    except OSError as exc:
        reason = f"no close frame: {exc!r}"
    finally:
        started.set()
        ws.close()
        results.put((code, reason, sent))


# -- the bystander's latency --------------------------------------------------------------------


async def measure(http: aiohttp.ClientSession, node: GatewayNode, args: Any) -> list[float]:
    """Latencies (ms) of every message a talker sends to a bystander's room for ``args.phase`` s."""
    room = f"room:bench-{time.time_ns()}"
    url = node.base_url + "/ws"
    bystander = await WsClient.connect(http, token(f"bystander-{time.time_ns()}"), url)
    talker = await WsClient.connect(http, token(f"talker-{time.time_ns()}"), url)
    await bystander.result("subscribe", channel=room)
    latencies = await bystander_latencies(talker, bystander, room, phase=args.phase, rate=args.rate)
    await bystander.close()
    await talker.close()
    return latencies


async def run_node(
    node: GatewayNode, label: str, attacks: list[str], args: Any
) -> list[tuple[str, str, float, float, str]]:
    context = multiprocessing.get_context("spawn")
    rows: list[tuple[str, str, float, float, str]] = []
    async with aiohttp.ClientSession() as http:
        quiet = await measure(http, node, args)
        base = (percentile(quiet, 50), percentile(quiet, 99))
        rows.append((label, "no attack", *base, "-"))
        for name in attacks:
            stop, started = context.Event(), context.Event()
            results: multiprocessing.Queue[tuple[int, str, int]] = context.Queue()
            process = context.Process(
                target=attack, args=(node.port, name, stop, started, results), daemon=True
            )
            process.start()
            await asyncio.to_thread(started.wait, 30)
            await asyncio.sleep(HEAD_START)
            latencies = await measure(http, node, args)
            stop.set()
            code, reason, sent = await asyncio.to_thread(results.get, True, 30)
            await asyncio.to_thread(process.join, 10)
            rows.append(
                (
                    label,
                    name,
                    percentile(latencies, 50),
                    percentile(latencies, 99),
                    f"{code} {reason!r}, {sent:,} frames written",
                )
            )
    return rows


def print_rows(rows: list[tuple[str, str, float, float, str]]) -> None:
    baselines = {label: (p50, p99) for label, name, p50, p99, _ in rows if name == "no attack"}
    print(f"{'node':7} {'phase':26} {'p50 ms':>7} {'p99 ms':>7} {'p50 x':>6} {'p99 x':>6}  close")
    for label, name, p50, p99, close in rows:
        b50, b99 = baselines[label]
        print(
            f"{label:7} {name:26} {p50:7.2f} {p99:7.2f} {p50 / b50:6.2f} {p99 / b99:6.2f}  {close}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", type=float, default=4.0, help="seconds measured per phase")
    parser.add_argument("--rate", type=float, default=100.0, help="talker's messages a second")
    parser.add_argument(
        "--flood-close",
        type=float,
        default=3.0,
        help="MOOSIC_WS_FLOOD_CLOSE_SECONDS of the budget node",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ws-flood-"))
    common = {
        "MOOSIC_DEV": "1",
        "MOOSIC_JWT_SECRET": TEST_JWT_SECRET,
        "MOOSIC_LOG_LEVEL": "WARNING",
        "MOOSIC_WS_CLOSE_TIMEOUT": "10",
        "MOOSIC_SHUTDOWN_TIMEOUT": "2",
        "MOOSIC_WS_HEARTBEAT": "600",
    }
    bound = GatewayNode(
        {
            **common,
            "MOOSIC_SQLITE_PATH": str(work / "bound.db"),
            "MOOSIC_WS_MAX_BACKLOG_BYTES": "65536",
            "MOOSIC_WS_FRAMES_PER_SECOND": "100000",
            "MOOSIC_WS_FRAME_BURST": "100000",
        },
        work / "bound.log",
    )
    budget = GatewayNode(
        {
            **common,
            "MOOSIC_SQLITE_PATH": str(work / "budget.db"),
            "MOOSIC_WS_FLOOD_CLOSE_SECONDS": str(args.flood_close),
        },
        work / "budget.log",
    )
    began = time.monotonic()
    try:
        bound.start()
        budget.start()

        async def everything() -> list[tuple[str, str, float, float, str]]:
            async with asyncio.timeout(DEADLINE):
                rows = await run_node(bound, "bound", ["pings never read"], args)
                # The pinger too: at the default budget it is cut by the budget first.
                return rows + await run_node(budget, "budget", list(ATTACKS), args)

        rows = asyncio.run(everything())
    finally:
        for node in (bound, budget):
            node.stop()
    print(
        f"bystander delivery latency, {args.rate:g} messages/s for {args.phase:g} s per phase "
        f"(flood close {args.flood_close:g} s; {time.monotonic() - began:.1f} s in all)"
    )
    print_rows(rows)
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    sys.exit(main())
