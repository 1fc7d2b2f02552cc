"""RS256 tokens of an external identity provider, with keys from a JWKS served over loopback."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import orjson
from aiohttp import web

from tests.support.clients import WsClient
from tests.unit.test_token_keys import OTHER_RSA_KEY, RSA_KEY, jwk

ISSUER = "https://idp.moosic.example/pool-1"
AUDIENCE = "moosic-app-client"
TIMEOUT = 20.0


class Provider:
    """A loopback JWKS endpoint whose keys a test can change, counting the reads."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = [jwk(RSA_KEY, "key-1")]
        self.reads = 0
        self.down = False

    async def serve(self, request: web.Request) -> web.Response:
        self.reads += 1
        if self.down:
            return web.Response(status=503)
        return web.Response(body=orjson.dumps({"keys": self.keys}), content_type="application/json")


def rs_token(key: Any, kid: str, **changes: Any) -> str:
    now = int(time.time())
    claims = {"sub": "idp-user-1", "iat": now, "exp": now + 60, "iss": ISSUER, "aud": AUDIENCE}
    claims.update(changes)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


async def start_provider(aiohttp_server: Any) -> tuple[Provider, str]:
    provider = Provider()
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", provider.serve)
    server = await aiohttp_server(app)
    return provider, str(server.make_url("/.well-known/jwks.json"))


async def me(client: Any, token: str) -> tuple[int, dict[str, Any]]:
    async with client.get("/v1/me", headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.json()


async def test_rs256_tokens_from_the_provider_work_and_its_rotation_is_followed(
    aiohttp_server: Any, make_client: Any
) -> None:
    provider, url = await start_provider(aiohttp_server)
    client = await make_client(
        jwks_url=url, jwks_refresh=1.0, jwks_issuer=ISSUER, jwks_audience=AUDIENCE
    )
    assert provider.reads == 1  # read at start-up, before serving

    token = rs_token(RSA_KEY, "key-1")
    assert await me(client, token) == (200, {"user_id": "idp-user-1", "username": None})
    ws = await WsClient.connect(client, token)
    assert "ts" in await ws.result("ping")
    await ws.close()

    # Forged with another key under the same kid, or for our own issuer: refused.
    assert (await me(client, rs_token(OTHER_RSA_KEY, "key-1")))[0] == 401
    assert (await me(client, rs_token(RSA_KEY, "key-1", iss="moosic", aud="moosic")))[0] == 401
    assert (await me(client, rs_token(RSA_KEY, "key-1", aud="another-client")))[0] == 401

    # The provider rotates: a new key appears, then the old one goes.
    provider.keys = [jwk(RSA_KEY, "key-1"), jwk(OTHER_RSA_KEY, "key-2")]
    fresh = rs_token(OTHER_RSA_KEY, "key-2")
    async with asyncio.timeout(TIMEOUT):
        while (await me(client, fresh))[0] != 200:
            await asyncio.sleep(0.1)
    provider.keys = [jwk(OTHER_RSA_KEY, "key-2")]
    async with asyncio.timeout(TIMEOUT):
        while (await me(client, token))[0] != 401:
            await asyncio.sleep(0.1)
    # A failing provider does not make the gateway forget the keys it has.
    provider.down = True
    reads = provider.reads
    async with asyncio.timeout(TIMEOUT):
        while provider.reads < reads + 2:
            await asyncio.sleep(0.1)
    assert (await me(client, fresh))[0] == 200


async def test_the_gateway_starts_when_the_provider_is_down(
    aiohttp_server: Any, make_client: Any
) -> None:
    provider, url = await start_provider(aiohttp_server)
    provider.down = True
    client = await make_client(
        jwks_url=url, jwks_refresh=1.0, jwks_issuer=ISSUER, jwks_audience=AUDIENCE
    )
    token = rs_token(RSA_KEY, "key-1")
    status, body = await me(client, token)
    assert (status, body["code"]) == (401, "unauthorized")
    provider.down = False  # back: the keys are read on the next attempt
    async with asyncio.timeout(TIMEOUT):
        while (await me(client, token))[0] != 200:
            await asyncio.sleep(0.1)
