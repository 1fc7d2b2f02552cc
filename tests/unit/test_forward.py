"""Publishes forwarded to the home region: what the sender is told (gateway/regions/forward.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.regions.forward import PUBLISH_PATH, Forwarder
from handlers.errors import OpError
from tests.support.servers import free_port

KEY = "k" * 32
answers: list[tuple[int, Any]] = []
seen: list[dict[str, Any]] = []


async def _publish(request: web.Request) -> web.Response:
    seen.append(
        {"auth": request.headers.get("Authorization"), **orjson.loads(await request.read())}
    )
    status, body = answers.pop(0)
    if body == "slow":
        await asyncio.sleep(5)
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


@pytest.fixture
async def home() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post(PUBLISH_PATH, _publish)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    answers.clear()
    seen.clear()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


async def forwarder(url: str) -> Forwarder:
    found = Forwarder({"kh": url}, KEY, timeout=0.5, concurrency=2)
    await found.start()
    return found


async def test_the_homes_answer_is_the_senders(home: str) -> None:
    sender = await forwarder(home)
    answers.append((201, {"offset": 7, "duplicate": False}))
    result = await sender.publish("kh", "room:kh.x", "u1_au", b'{"a": 1}', "c1")
    assert result == {"offset": 7, "duplicate": False}
    assert seen == [
        {
            "auth": f"Bearer {KEY}",
            "channel": "room:kh.x",
            "sender": "u1_au",
            "data": {"a": 1},
            "client_msg_id": "c1",
        }
    ]
    await sender.close()


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (413, {"code": "message_too_large", "message": "too big"}, "message_too_large"),
        (503, {"code": "unavailable", "message": "store down"}, "unavailable"),
        (401, {"code": "invalid_api_key", "message": "no"}, "unavailable"),
        (502, "not json at all", "unavailable"),
        (201, "slow", "unavailable"),
    ],
)
async def test_failures_are_the_homes_verdict_or_unavailable(
    home: str, status: int, body: Any, code: str
) -> None:
    sender = await forwarder(home)
    answers.append((status, body))
    with pytest.raises(OpError) as caught:
        await sender.publish("kh", "room:kh.x", "u1_au", b"{}", None)
    assert caught.value.kind.code == code
    await sender.close()


async def test_an_unreachable_home_is_unavailable_and_retryable() -> None:
    sender = await forwarder(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(OpError) as caught:
        await sender.publish("kh", "room:kh.x", "u1_au", b"{}", "c1")
    assert (caught.value.kind.code, caught.value.kind.retryable) == ("unavailable", True)
    assert sender.failed == 1
    await sender.close()
