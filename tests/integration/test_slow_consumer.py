"""A client that stops reading is closed with 4001; everyone else keeps receiving."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import orjson

from tests.integration.test_ws import token_for
from tests.support.clients import WsClient
from tests.support.rawws import RawWebSocket

BACKLOG = 64 * 1024
MESSAGES = 3000
PAYLOAD = "x" * 4000


async def metric(client: Any, name: str) -> float:
    async with client.get("/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


async def test_slow_consumer_is_closed_and_others_are_unaffected(make_client: Any) -> None:
    client = await make_client(ws_max_backlog_bytes=BACKLOG, ws_close_timeout=10.0)
    server = client.server
    loop = asyncio.get_running_loop()

    slow = await loop.run_in_executor(
        None,
        lambda: RawWebSocket(
            server.host, server.port, "/ws?token=" + token_for("slowpoke"), rcvbuf=4096
        ),
    )
    await loop.run_in_executor(
        None, slow.send_text, '{"op":"subscribe","id":1,"channel":"room:flood"}'
    )
    _opcode, payload = await loop.run_in_executor(None, slow.read_frame)
    assert orjson.loads(payload)["op"] == "reply"
    # From here on the slow client reads nothing.

    fast = await WsClient.connect(client, token_for("speedy"))
    await fast.result("subscribe", channel="room:flood")
    publisher = await WsClient.connect(client, token_for("loud"))

    peak = 0.0
    received = 0

    async def drain_fast() -> None:
        nonlocal received
        while received < MESSAGES:
            frame = await fast.receive()
            assert frame["op"] == "event"
            assert frame["data"]["n"] == received
            received += 1

    reader = asyncio.create_task(drain_fast())
    for n in range(MESSAGES):
        await publisher.result("publish", channel="room:flood", data={"n": n, "pad": PAYLOAD})
        if n % 100 == 0:
            peak = max(peak, await metric(client, "moosic_ws_outbound_buffered_bytes"))
    await asyncio.wait_for(reader, 60)

    assert received == MESSAGES
    assert await metric(client, "moosic_ws_slow_consumer_closes_total") == 1
    # Never more than one bound (plus one frame) queued for the slow socket; the fast one
    # keeps up, so its share is small.
    assert peak <= BACKLOG + len(PAYLOAD) + 4096

    # When the slow client reads again it finds the events it got, then the close frame.
    def read_until_close() -> tuple[int, int]:
        events = 0
        while True:
            opcode, payload = slow.read_frame()
            if opcode == 0x8:
                return events, struct.unpack("!H", payload[:2])[0]
            events += 1

    events, code = await loop.run_in_executor(None, read_until_close)
    slow.close()
    assert code == 4001
    assert 0 < events < MESSAGES


async def test_a_peer_that_never_reads_again_is_dropped(make_client: Any) -> None:
    client = await make_client(ws_max_backlog_bytes=BACKLOG, ws_close_timeout=0.5)
    server = client.server
    loop = asyncio.get_running_loop()
    slow = await loop.run_in_executor(
        None,
        lambda: RawWebSocket(
            server.host, server.port, "/ws?token=" + token_for("gone"), rcvbuf=4096
        ),
    )
    await loop.run_in_executor(None, slow.send_text, '{"op":"subscribe","id":1,"channel":"room:z"}')
    await loop.run_in_executor(None, slow.read_frame)
    publisher = await WsClient.connect(client, token_for("loud"))
    n = 0
    while await metric(client, "moosic_ws_slow_consumer_closes_total") == 0:
        await publisher.result("publish", channel="room:z", data={"n": n, "pad": PAYLOAD})
        n += 1
        assert n < 20000, "the slow consumer was never closed"
    # Its connection (and the memory queued for it) goes away without its cooperation.
    async with asyncio.timeout(30):
        while await metric(client, "moosic_ws_connections") != 1:
            await asyncio.sleep(0.1)
    assert await metric(client, "moosic_ws_outbound_buffered_bytes") == 0
    slow.close()


async def test_heartbeat_drops_a_peer_that_never_answers_pings(make_client: Any) -> None:
    client = await make_client(ws_heartbeat=1.0)
    server = client.server
    loop = asyncio.get_running_loop()
    silent = await loop.run_in_executor(
        None, lambda: RawWebSocket(server.host, server.port, "/ws?token=" + token_for("ghost"))
    )
    assert await metric(client, "moosic_ws_connections") == 1
    # The raw client never answers the server's pings: the server gives up on it by itself.
    async with asyncio.timeout(30):
        while await metric(client, "moosic_ws_connections") != 0:
            await asyncio.sleep(0.1)
    silent.close()
