"""RFC 6455 details of the gateway's own WebSocket implementation, over a raw socket."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
import pytest

from gateway.ws.frames import accept_key
from tests.integration.test_ws import token_for
from tests.support.rawws import RawWebSocket

T = TypeVar("T")


async def blocking(fn: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn)


async def open_raw(client: Any, **options: Any) -> RawWebSocket:
    server = client.server
    path = "/ws?token=" + token_for("wire")
    return await blocking(lambda: RawWebSocket(server.host, server.port, path, **options))


def close_code(payload: bytes) -> int:
    return int(struct.unpack("!H", payload[:2])[0])


def test_accept_key_matches_rfc_example() -> None:
    # RFC 6455, section 1.3.
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


async def test_ping_pong_and_fragmented_messages(client: Any) -> None:
    ws = await open_raw(client)
    await blocking(lambda: ws.send_frame(0x9, b"are you there"))
    assert await blocking(ws.read_frame) == (0xA, b"are you there")
    text = b'{"op":"ping","id":41}'
    await blocking(lambda: ws.send_frame(0x1, text[:5], fin=False))
    await blocking(lambda: ws.send_frame(0x9, b"mid"))  # control frames may interleave
    await blocking(lambda: ws.send_frame(0x0, text[5:12], fin=False))
    await blocking(lambda: ws.send_frame(0x0, text[12:]))
    assert await blocking(ws.read_frame) == (0xA, b"mid")
    opcode, payload = await blocking(ws.read_frame)
    assert opcode == 0x1
    assert orjson.loads(payload)["id"] == 41
    ws.close()


async def test_frames_sent_with_the_handshake_are_not_lost(client: Any) -> None:
    early = RawWebSocket.encode(0x1, b'{"op":"ping","id":7}')
    ws = await open_raw(client, extra=early)
    _opcode, payload = await blocking(ws.read_frame)
    assert orjson.loads(payload)["id"] == 7
    ws.close()


async def test_client_close_is_echoed(client: Any) -> None:
    ws = await open_raw(client)
    await blocking(lambda: ws.send_frame(0x8, struct.pack("!H", 1001) + b"bye"))
    opcode, payload = await blocking(ws.read_frame)
    assert (opcode, close_code(payload)) == (0x8, 1001)
    with pytest.raises(ConnectionError):
        await blocking(ws.read_frame)
    ws.close()


@pytest.mark.parametrize(
    "knobs",
    [
        {"masked": False},
        {"rsv": 0x40},
        {"opcode": 0x3},
        {"opcode": 0x0},
        {"opcode": 0x9, "payload": b"x" * 126},
        {"opcode": 0x9, "fin": False},
    ],
)
async def test_protocol_violations_close_with_1002(client: Any, knobs: dict[str, Any]) -> None:
    ws = await open_raw(client)
    opcode = knobs.pop("opcode", 0x1)
    payload = knobs.pop("payload", b'{"op":"ping"}')
    await blocking(lambda: ws.send_frame(opcode, payload, **knobs))
    received, body = await blocking(ws.read_frame)
    assert (received, close_code(body)) == (0x8, 1002)
    ws.close()


async def test_new_message_inside_a_fragmented_one_is_refused(client: Any) -> None:
    ws = await open_raw(client)
    await blocking(lambda: ws.send_frame(0x1, b'{"op":', fin=False))
    await blocking(lambda: ws.send_frame(0x1, b'{"op":"ping"}'))
    received, body = await blocking(ws.read_frame)
    assert (received, close_code(body)) == (0x8, 1002)
    ws.close()


async def test_fragments_past_the_hard_limit_close_with_1009(make_client: Any) -> None:
    client = await make_client(ws_max_frame_bytes=1024, ws_close_frame_bytes=4096)
    ws = await open_raw(client)
    await blocking(lambda: ws.send_frame(0x1, b"x" * 1000, fin=False))
    for _ in range(3):
        await blocking(lambda: ws.send_frame(0x0, b"x" * 1000, fin=False))
    await blocking(lambda: ws.send_frame(0x0, b"x" * 1000))
    received, body = await blocking(ws.read_frame)
    assert (received, close_code(body)) == (0x8, 1009)
    ws.close()


async def test_handshake_refusals(client: Any) -> None:
    server = client.server
    path = "/ws?token=" + token_for("wire")
    with pytest.raises(ConnectionError, match="426"):
        await blocking(lambda: RawWebSocket(server.host, server.port, path, version="8"))
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "not base64!",
        "Authorization": "Bearer " + token_for("wire"),
    }
    async with client.get("/ws", headers=headers) as response:
        assert response.status == 400
        assert (await response.json())["code"] == "invalid_frame"


async def test_many_connections_open_and_close_cleanly(make_client: Any) -> None:
    client = await make_client(max_connections_per_user=50)  # one user opens them all
    sockets = [await open_raw(client) for _ in range(50)]
    async with client.get("/metrics") as r:
        assert "moosic_ws_connections 50" in await r.text()
    for ws in sockets:
        await blocking(lambda ws=ws: ws.send_frame(0x8, struct.pack("!H", 1000)))
        ws.close()
    async with asyncio.timeout(20):
        while True:
            async with client.get("/metrics") as r:
                if "moosic_ws_connections 0" in await r.text():
                    break
            await asyncio.sleep(0.05)
