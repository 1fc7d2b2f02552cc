"""CloudWatch Embedded Metric Format from a real gateway process: one JSON line per interval,
a valid EMF directive naming exactly the values it carries, counters as their growth."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import orjson

from gateway.emf import MAX_METRICS, NAMESPACE
from tests.support.clients import WsClient, register
from tests.support.servers import GatewayNode, local_env


def emf_lines(path: Path) -> list[dict[str, object]]:
    """The EMF lines written so far (a line still being written, with no newline yet, waits)."""
    complete = path.read_bytes().split(b"\n")[:-1]
    return [orjson.loads(line) for line in complete if line.startswith(b'{"_aws"')]


async def test_emf_lines_carry_the_metrics_and_counters_as_growth(tmp_path: Path) -> None:
    log = tmp_path / "node.log"
    env = local_env(
        tmp_path,
        MOOSIC_EMF_INTERVAL="0.2",
        MOOSIC_REGION="ap-southeast-1",
        MOOSIC_LOG_FORMAT="json",
    )
    node = GatewayNode(env, log).start()
    try:
        async with aiohttp.ClientSession() as http:
            account = await register(http, "emf", node.base_url)
            for _ in range(3):
                ws = await WsClient.connect(http, account["access_token"], node.base_url + "/ws")
                await ws.result("ping")
                await ws.close()
            async with asyncio.timeout(30):
                while len(emf_lines(log)) < 3:
                    await asyncio.sleep(0.1)
            before = len(emf_lines(log))
            async with asyncio.timeout(30):  # two more lines after the sockets: all counted
                while len(emf_lines(log)) < before + 2:
                    await asyncio.sleep(0.1)
    finally:
        node.stop()

    lines = emf_lines(log)
    for line in lines:
        aws = line["_aws"]
        assert isinstance(aws, dict)
        assert isinstance(aws["Timestamp"], int)
        (directive,) = aws["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE
        assert directive["Dimensions"] == [["Region", "Node"]]
        names = [m["Name"] for m in directive["Metrics"]]
        assert 0 < len(names) <= MAX_METRICS
        for name in names:
            assert isinstance(line[name], int | float), name
        assert line["Region"] == "ap-southeast-1"
        assert str(line["Node"]).endswith(f":{node.port}")
    opened = [line.get("ws_connections_opened") for line in lines]
    assert all(isinstance(value, int | float) and value >= 0 for value in opened)
    assert sum(opened) == 3  # growth per line, summed: the three sockets, once each
    assert lines[-1]["ws_connections"] == 0  # a gauge, as it is now
