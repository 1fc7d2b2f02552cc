"""X-Request-Id middleware (issue 17): a valid incoming id is kept, an invalid one replaced."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway import logs
from gateway.http.request_id import request_id_middleware


async def _seen(request: web.Request) -> web.Response:
    return web.Response(text=logs.request_id.get() or "")


async def _run() -> list[tuple[str, str]]:
    app = web.Application(middlewares=[request_id_middleware])
    app.router.add_get("/", _seen)
    out: list[tuple[str, str]] = []
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        for sent in ("abc-123", "bad id!" * 20, ""):
            resp = await client.get("/", headers={"X-Request-Id": sent} if sent else {})
            out.append((resp.headers["X-Request-Id"], await resp.text()))
    return out


def test_request_id_kept_or_made_and_returned() -> None:
    kept, replaced, made = asyncio.run(_run())
    assert kept == ("abc-123", "abc-123")
    assert replaced[0] == replaced[1]
    assert len(replaced[0]) == 16
    assert "bad" not in replaced[0]
    assert made[0] == made[1]
    assert len(made[0]) == 16
