"""After the upgrade nothing of aiohttp's HTTP machinery stays with a socket: its request
handler, parser and parsed request are released at once (they used to wait for the handler's
keep-alive timer, ~6 KiB a socket for 75 s: docs/benchmarks.md)."""

from __future__ import annotations

import gc
from typing import Any

from aiohttp.web_protocol import RequestHandler

from gateway.app import create_app
from gateway.settings import Settings
from tests.integration.test_ws import token_for


async def test_no_request_handler_outlives_the_upgrade(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings))
    sockets = []
    for n in range(20):
        ws = await client.ws_connect(f"/ws?token={token_for(f'held{n}')}")
        await ws.send_json({"op": "ping", "id": 1})
        assert (await ws.receive_json(timeout=10))["op"] == "reply"
        sockets.append(ws)
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, RequestHandler)]
    # The test client's own keep-alive HTTP connection may hold one; no socket does.
    assert len(alive) <= 1, len(alive)
    for ws in sockets:
        await ws.close()
    await client.close()
