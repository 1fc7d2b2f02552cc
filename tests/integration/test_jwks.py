"""RS256 tokens of an external identity provider, with keys from a JWKS served over loopback."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import orjson
from aiohttp import web

from tests.support.clients import WsClient, bearer, register
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
    assert await me(client, token) == (200, {"user_id": "ext-idp-user-1", "username": None})
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


async def test_a_provider_subject_equal_to_a_local_user_id_does_not_act_as_that_user(
    aiohttp_server: Any, make_client: Any
) -> None:
    _provider, url = await start_provider(aiohttp_server)
    client = await make_client(jwks_url=url, jwks_issuer=ISSUER, jwks_audience=AUDIENCE)
    alice = await register(client, "alice")
    local_id = alice["user_id"]
    async with client.post("/v1/groups", json={"name": "private"}, headers=bearer(alice)) as r:
        assert r.status == 201
        group = await r.json()
    async with client.post(
        f"/v1/channels/{group['channel']}/messages",
        json={"data": {"t": "secret"}},
        headers=bearer(alice),
    ) as r:
        assert r.status == 201

    # The provider (or one of its users) has a subject that is alice's local id.
    twin = rs_token(RSA_KEY, "key-1", sub=local_id)
    as_twin = {"Authorization": f"Bearer {twin}"}
    assert await me(client, twin) == (200, {"user_id": "ext-" + local_id, "username": None})
    async with client.get(f"/v1/groups/{group['group_id']}", headers=as_twin) as r:
        assert (r.status, (await r.json())["code"]) == (404, "not_found")
    async with client.get(f"/v1/channels/{group['channel']}/messages", headers=as_twin) as r:
        assert (r.status, (await r.json())["code"]) == (403, "forbidden")
    ws = await WsClient.connect(client, twin)
    refused = await ws.call("subscribe", channel=f"user:{local_id}")
    assert (refused["op"], refused["code"]) == ("error", "forbidden")
    assert (await ws.result("subscribe", channel=f"user:ext-{local_id}"))["offset"] == 0
    await ws.close()
    # Alice herself still is alice.
    async with client.get(f"/v1/channels/{group['channel']}/messages", headers=bearer(alice)) as r:
        assert r.status == 200
        assert [m["data"] for m in (await r.json())["messages"]] == [{"t": "secret"}]
    # A subject too long to take the prefix and stay a user id is refused, not cut.
    assert (await me(client, rs_token(RSA_KEY, "key-1", sub="a" * 61)))[0] == 401
    assert (await me(client, rs_token(RSA_KEY, "key-1", sub="a" * 60)))[0] == 200


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
