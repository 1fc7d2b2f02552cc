"""S4 chat-like: two-person rooms on one node, every connection sending one message a second.

Sends go round-robin over the connections, so each sends once a second, spread evenly. A
delivery counts when the other member of the room receives the message (echoes to the sender
are counted apart); a message counts as stored when the server acknowledged it. After the
window the sending stops and the run waits (bounded) for every message to arrive.
"""

import asyncio
import time
from typing import Any

from .client import ChatSink, Conn, close_all, join_all, message, open_all, padding_for
from .measure import snap, window
from .pacing import Pacer
from .targets import Context, Target, running
from .tokens import mint


def _room(conn: Conn) -> str:
    return f"room:chat-{conn.index // 2:05d}"


async def _drain(sink: ChatSink, timeout_s: float) -> float:
    """Wait until every sent message is acknowledged and delivered; return the wait."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if sink.delivered >= sink.sent and sink.acks + sink.errors >= sink.sent:
            break
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def chat(target: Target, ctx: Context) -> dict[str, Any]:
    """Run the chat load against a fresh node and measure the window."""
    plan = ctx.plan
    count = plan.chat_connections
    padding = padding_for(plan.message_bytes)
    async with running(target, 1, ctx, "s4") as cluster:
        sink = ChatSink()
        conns: list[Conn] = []
        turn = 0

        def send_next() -> None:
            nonlocal turn
            conn = conns[turn % count]
            turn += 1
            sink.sent += 1
            conn.publish(_room(conn), message(conn.index, padding))

        pacer = Pacer(send_next, plan.chat_warmup_s + plan.chat_window_s + 30)
        try:
            conns += await open_all(
                target.wire,
                cluster.ports[0],
                mint(ctx.secret, "bench-chat-", count),
                sink,
                plan.open_concurrency,
            )
            await join_all(conns, _room, plan.open_concurrency)
            pacer.rate = float(count)
            pacer.start()
            await asyncio.sleep(plan.chat_warmup_s)
            start = snap(cluster, sink)
            sink.start_recording()
            await asyncio.sleep(plan.chat_window_s)
            end = snap(cluster, sink)
            latencies = sink.stop_recording()
            await pacer.stop()
            drain_s = await _drain(sink, plan.drain_timeout_s)
            cluster.check_alive()
            return {
                "connections": count,
                "rooms": count // 2,
                "offered_msgs_per_s": count,
                **window(start, end, latencies),
                "sent": sink.sent,
                "stored_acked": sink.acks,
                "delivered_to_peer": sink.delivered,
                "echoes_to_sender": sink.echoes,
                "errors_total": sink.errors,
                "delivered_pct": 100 * sink.delivered / sink.sent if sink.sent else None,
                "stored_pct": 100 * sink.acks / sink.sent if sink.sent else None,
                "kept_up": sink.delivered >= sink.sent and sink.acks >= sink.sent,
                "drain_s": round(drain_s, 3),
                "disconnects": sink.disconnects,
                "notes": list(sink.notes),
            }
        finally:
            await pacer.stop()
            close_all(conns)
