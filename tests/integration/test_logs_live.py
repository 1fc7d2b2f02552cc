"""A real gateway process in JSON log mode: every line a JSON object, REST lines with their
request id, a socket's lines with its connection id, and never a token or a password, however
they were sent (query string, header, body)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import orjson

from tests.support.clients import PASSWORD, bearer, register
from tests.support.rawws import RawWebSocket
from tests.support.servers import GatewayNode, local_env


async def test_json_lines_carry_ids_and_no_secret(tmp_path: Path) -> None:
    log_path = tmp_path / "node.log"
    node = GatewayNode(
        local_env(tmp_path, MOOSIC_LOG_FORMAT="json", MOOSIC_LOG_LEVEL="INFO"), log_path
    ).start()
    secrets: list[str] = [PASSWORD]
    try:
        async with aiohttp.ClientSession() as http:
            account = await register(http, "logged", node.base_url)
            secrets += [account["access_token"], account["refresh_token"]]
            async with http.post(
                node.base_url + "/v1/auth/refresh",
                json={"refresh_token": account["refresh_token"]},
            ) as response:
                renewed = await response.json()
                secrets += [renewed["access_token"], renewed["refresh_token"]]
            async with http.get(
                node.base_url + "/v1/conversations", headers={"X-Request-Id": "trace-me-1"}
            ) as response:
                assert response.status == 401  # no token
            async with http.get(
                node.base_url + "/v1/conversations?token=" + renewed["access_token"],
                headers=bearer(renewed),
            ) as response:
                assert response.headers["X-Request-Id"]
        # Two sockets with the token in the query string; each breaks the protocol and is
        # closed, which the node logs with that socket's id.
        for _ in range(2):
            ws = RawWebSocket(
                "127.0.0.1", node.port, "/ws?token=" + renewed["access_token"], rcvbuf=65536
            )
            ws.send_frame(0x3, b"")  # a reserved opcode: closed as a protocol error
            ws.sock.settimeout(10)
            code, _reason, _ = ws.read_close()
            assert code == 1002
            ws.close()
        await asyncio.sleep(0.5)
    finally:
        node.stop()

    text = log_path.read_text()
    lines = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    assert lines, "the node logged nothing"
    for line in lines:
        assert {"ts", "level", "logger", "msg"} <= line.keys(), line
    for secret in secrets:
        assert secret not in text
    assert "token=" + "[redacted]" in text or "?token=" not in text
    assert any(line.get("request_id") == "trace-me-1" for line in lines)
    access = [line for line in lines if line["logger"] == "aiohttp.access"]
    assert len(access) >= 6
    assert all(line.get("request_id") for line in access), access  # every request's own line
    closes = [line for line in lines if "closing a WebSocket" in line["msg"]]
    assert len(closes) == 2, closes
    ids = [line.get("conn_id") for line in closes]
    assert all(isinstance(i, str) and re.fullmatch(r"c\d+", i) for i in ids), ids
    assert ids[0] != ids[1]
