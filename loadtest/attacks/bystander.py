"""What every attack bench measures: a bystander's delivery latency while a talker publishes."""

from __future__ import annotations

import asyncio
import statistics
import time

import jwt

from tests.support.clients import WsClient
from tests.support.servers import TEST_JWT_SECRET


def token(user: str) -> str:
    """An hour's access token for ``user``, signed with the test harness's secret."""
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + 3600, "iss": "moosic", "aud": "moosic"}
    return jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS256")


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def latencies(
    talker: WsClient, bystander: WsClient, room: str, *, phase: float, rate: float
) -> list[float]:
    """The talker publishes ``rate``/s to ``room`` for ``phase`` s, paced; the bystander (already
    subscribed) hears each. Returns every delivery's latency in ms; every publish must be
    answered ``reply``."""
    count = int(phase * rate)
    heard: list[float] = []

    async def hear() -> None:
        while len(heard) < count:
            frame = await bystander.next_event(timeout=30)
            heard.append((time.monotonic_ns() - frame["data"]["t"]) / 1e6)

    async def drain_replies() -> None:
        for _ in range(count):
            frame = await talker.receive(timeout=30)
            assert frame["op"] == "reply", frame

    listening = asyncio.gather(hear(), drain_replies())
    start = time.monotonic()
    for n in range(count):
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        await talker.send(
            {"op": "publish", "channel": room, "data": {"t": time.monotonic_ns(), "n": n}}
        )
    await asyncio.wait_for(listening, 30)
    return heard
