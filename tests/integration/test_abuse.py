"""Abuse over real sockets: stuffing, floods, hijacked sockets, stolen and expired tokens.

Limits are set small per test through settings; assertions are on counts and order, never on
durations.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import jwt
import orjson
import pytest

from gateway.guard.ratelimit import RateLimits
from tests.conftest import JWT_SECRET
from tests.integration.test_ws import token_for
from tests.support.clients import PASSWORD, WsClient, bearer, register

TIMEOUT = 20.0


def limits(text: str) -> RateLimits:
    """The test suite's base limits (publish lifted) changed by ``text``."""
    return RateLimits.parse("publish=off," + text)


async def login(client: Any, username: str, password: str = PASSWORD, **headers: str) -> Any:
    return await client.post(
        "/v1/auth/login", json={"username": username, "password": password}, headers=headers
    )


def upgrade(token: str) -> dict[str, str]:
    """Headers of a WebSocket handshake, for tests that expect it refused."""
    return {
        "Authorization": f"Bearer {token}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """Read until the server closes the socket; return its close code."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            message = await ws.receive()
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return ws.close_code


# -- sign-in ---------------------------------------------------------------------------------


async def test_credential_stuffing_is_refused_even_with_the_right_password(
    make_client: Any,
) -> None:
    client = await make_client(rate_limits=limits("login=5/1h,login_account=100/1h"))
    await register(client, "victim")
    for n in range(5):  # a leaked list: other names, wrong passwords
        async with await login(client, f"user{n}", "wrong password") as r:
            assert (r.status, (await r.json())["code"]) == (401, "invalid_credentials")
    async with await login(client, "victim") as r:
        body = await r.json()
        assert r.status == 429
        assert body["code"] == "rate_limited"
        assert body["retryable"] is True
        assert body["retry_after"] > 0
        assert int(r.headers["Retry-After"]) >= 1
    async with client.get("/metrics") as r:
        assert "moosic_rate_limited_total 1" in await r.text()


async def test_one_account_is_protected_across_addresses(make_client: Any) -> None:
    # Behind a trusted proxy every attempt comes from another address: only the per-account
    # bucket sees them all.
    client = await make_client(
        rate_limits=limits("login=100/1h,login_account=3/1h"),
        trusted_proxies=(__import__("ipaddress").ip_network("127.0.0.1/32"),),
        allowed_countries=None,
    )
    await register(client, "target")
    await register(client, "other")
    for n in range(3):
        async with await login(
            client, "target", "bad guess", **{"X-Forwarded-For": f"8.8.4.{n}"}
        ) as r:
            assert r.status == 401
    async with await login(client, "target", **{"X-Forwarded-For": "8.8.8.8"}) as r:
        assert (r.status, (await r.json())["code"]) == (429, "rate_limited")
    async with await login(client, "other", **{"X-Forwarded-For": "8.8.8.8"}) as r:
        assert r.status == 200  # another account, same address: fine


async def test_registration_floods_are_refused_per_address(make_client: Any) -> None:
    client = await make_client(rate_limits=limits("register=3/1h"))
    for n in range(3):
        await register(client, f"new{n}")
    async with client.post(
        "/v1/auth/register", json={"username": "new3", "password": PASSWORD}
    ) as r:
        assert (r.status, (await r.json())["code"]) == (429, "rate_limited")


# -- floods ----------------------------------------------------------------------------------


async def test_a_spam_flood_is_cut_and_a_bystander_loses_nothing(make_client: Any) -> None:
    budget = 20
    client = await make_client(rate_limits=RateLimits.parse(f"publish={budget}/1h"))
    spammer = await WsClient.connect(client, token_for("spammer"))
    talker = await WsClient.connect(client, token_for("talker"))
    listener = await WsClient.connect(client, token_for("listener"))
    await listener.result("subscribe", channel="room:lobby")

    flood = 300
    for n in range(flood):  # as fast as the socket takes them, no waiting for answers
        await spammer.send_raw(
            orjson.dumps(
                {"op": "publish", "id": n, "channel": "room:lobby", "data": {"spam": n}}
            ).decode()
        )
    # While the flood is being answered, another user talks in the same room.
    mine = [await talker.result("publish", channel="room:lobby", data={"n": n}) for n in range(10)]

    answers = [await spammer.receive() for _ in range(flood)]
    assert [a["id"] for a in answers] == list(range(flood))  # one answer each, in order
    accepted = [a for a in answers if a["op"] == "reply"]
    refused = [a for a in answers if a["op"] == "error"]
    assert len(accepted) == budget
    assert {a["code"] for a in refused} == {"rate_limited"}
    assert all(a["retry_after"] > 0 for a in refused)

    events = [await listener.next_event() for _ in range(budget + len(mine))]
    offsets = [e["offset"] for e in events]
    assert offsets == sorted(offsets) == list(range(1, budget + len(mine) + 1))
    talked = [e["data"]["n"] for e in events if e["from"] == "talker"]
    assert talked == list(range(10))  # every message, in order
    # The flood could bury the talker's messages under at most the spammer's budget.
    assert sum(1 for e in events if e["from"] == "spammer") == budget
    assert [m["offset"] for m in mine] == [e["offset"] for e in events if e["from"] == "talker"]

    # The budget is the user's, whatever the transport.
    async with client.post(
        "/v1/channels/room:lobby/messages",
        json={"data": {"spam": "rest"}},
        headers={"Authorization": f"Bearer {token_for('spammer')}"},
    ) as r:
        assert (r.status, (await r.json())["code"]) == (429, "rate_limited")
        assert int(r.headers["Retry-After"]) >= 1
    for conn in (spammer, talker, listener):
        await conn.close()


async def test_any_op_can_be_limited_by_name(make_client: Any) -> None:
    client = await make_client(rate_limits=limits("history=2/1h,subscribe=3/1h"))
    conn = await WsClient.connect(client, token_for("u1"))
    for _ in range(2):
        await conn.result("history", channel="room:a")
    error = await conn.call("history", channel="room:a")
    assert (error["op"], error["code"]) == ("error", "rate_limited")
    for n in range(3):
        await conn.result("subscribe", channel=f"room:s{n}")
    churn = await conn.call("subscribe", channel="room:s9")
    assert churn["code"] == "rate_limited"
    assert "ts" in await conn.result("ping")  # unlimited ops still pass
    await conn.close()


async def test_rest_requests_are_limited_per_user_and_address(make_client: Any) -> None:
    client = await make_client(rate_limits=limits("rest_user=3/1h,rest=6/1h"))
    headers = {"Authorization": f"Bearer {token_for('u1')}"}
    for _ in range(3):
        async with client.get("/v1/me", headers=headers) as r:
            assert r.status == 200
    async with client.get("/v1/me", headers=headers) as r:
        assert (r.status, (await r.json())["code"]) == (429, "rate_limited")
    for _ in range(10):  # probes are never counted
        async with client.get("/healthz") as r:
            assert r.status == 200
    async with client.get("/v1/me", headers={"Authorization": f"Bearer {token_for('u2')}"}) as r:
        assert r.status == 200  # another user: 5th request of this address
    async with client.get("/v1/me", headers={"Authorization": f"Bearer {token_for('u3')}"}) as r:
        assert r.status == 200  # 6th
    async with client.get("/v1/openapi.json") as r:
        assert (r.status, (await r.json())["code"]) == (429, "rate_limited")  # 7th
    # Signed playback links are not counted (their signature and expiry are the control):
    # an unknown link is refused as such, not as rate limited.
    async with client.get("/v1/media/play/not-a-token/master.m3u8") as r:
        assert r.status != 429


async def test_default_limits_let_a_normal_session_through(make_client: Any) -> None:
    client = await make_client(rate_limits=RateLimits())
    account = await register(client, "normal")
    async with await login(client, "normal") as r:
        assert r.status == 200
    conn = await WsClient.connect(client, account["access_token"])
    for n in range(30):
        await conn.result("subscribe", channel=f"room:r{n}")
    for n in range(50):
        await conn.result("publish", channel="room:r0", data={"n": n})
    for _ in range(20):
        async with client.get("/v1/conversations", headers=bearer(account)) as r:
            assert r.status == 200
    await conn.close()


# -- sockets ---------------------------------------------------------------------------------


async def test_connections_per_user_are_capped(make_client: Any) -> None:
    client = await make_client(max_connections_per_user=2)
    first = await WsClient.connect(client, token_for("u1"))
    second = await WsClient.connect(client, token_for("u1"))
    async with client.get("/ws", headers=upgrade(token_for("u1"))) as r:
        assert (r.status, (await r.json())["code"]) == (429, "too_many_connections")
    other = await WsClient.connect(client, token_for("u2"))  # another user is not affected
    await first.close()
    async with asyncio.timeout(TIMEOUT):
        while True:  # the server notices the close, then there is room again
            try:
                third = await WsClient.connect(client, token_for("u1"))
            except aiohttp.WSServerHandshakeError:
                await asyncio.sleep(0.05)
            else:
                break
    for conn in (second, other, third):
        await conn.close()


async def test_handshakes_are_rate_limited_per_user(make_client: Any) -> None:
    client = await make_client(rate_limits=limits("connect=3/1h"))
    for _ in range(3):
        conn = await WsClient.connect(client, token_for("u1"))
        await conn.close()
    async with client.get("/ws", headers=upgrade(token_for("u1"))) as r:
        assert (r.status, (await r.json())["code"]) == (429, "rate_limited")
        assert int(r.headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),  # an app: no Origin
        ("https://app.moosic.example", True),
        ("HTTPS://APP.MOOSIC.EXAMPLE/", True),
        ("https://evil.example", False),
        ("https://app.moosic.example.evil.example", False),
        ("http://app.moosic.example", False),
        ("null", False),
    ],
)
async def test_websocket_origin_allowlist(
    make_client: Any, origin: str | None, allowed: bool
) -> None:
    client = await make_client(ws_allowed_origins=frozenset({"https://app.moosic.example"}))
    headers = {"Authorization": f"Bearer {token_for('u1')}"}
    if origin is not None:
        headers["Origin"] = origin
    if allowed:
        ws = await client.ws_connect("/ws", headers=headers)
        assert "ts" in await WsClient(ws).result("ping")
        await ws.close()
        return
    async with client.get("/ws", headers={**headers, **upgrade(token_for("u1"))}) as r:
        assert (r.status, (await r.json())["code"]) == (403, "origin_not_allowed")


async def test_http_answers_carry_security_headers(client: Any) -> None:
    requests = [
        client.get("/healthz"),
        client.get("/v1/me"),  # 401
        client.get("/nowhere"),  # 404
        client.post("/v1/auth/login", data=b"{"),  # 400
        client.get("/v1/openapi.json"),
    ]
    for request in requests:
        async with request as r:
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["X-Frame-Options"] == "DENY"
            assert "default-src 'none'" in r.headers["Content-Security-Policy"]
            assert r.headers["Cache-Control"] == "no-store"
            assert r.headers["Referrer-Policy"] == "no-referrer"
            assert "max-age=" in r.headers["Strict-Transport-Security"]
            assert "Access-Control-Allow-Origin" not in r.headers


# -- tokens and sessions ---------------------------------------------------------------------


def forged(**claims: Any) -> str:
    now = int(time.time())
    body = {"sub": "u1", "iat": now, "exp": now + 3600, "iss": "moosic", "aud": "moosic"}
    body.update(claims)
    return jwt.encode(body, JWT_SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (
            jwt.encode(
                {"sub": "u1", "iat": 1, "exp": 2**40, "iss": "moosic", "aud": "moosic"},
                None,
                algorithm="none",
            ),
            "unauthorized",
        ),
        (
            jwt.encode(
                {"sub": "u1", "iat": 1, "exp": 2**40, "iss": "moosic", "aud": "moosic"},
                "another-secret-entirely-0123456789-abcdef",
                algorithm="HS256",
            ),
            "unauthorized",
        ),
        (forged(exp=int(time.time()) - 3600), "token_expired"),
        (forged(aud="another-app"), "unauthorized"),
        (forged(iss="someone-else"), "unauthorized"),
    ],
)
async def test_bad_tokens_are_refused_on_rest_and_websocket(
    client: Any, token: str, code: str
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with client.get("/v1/me", headers=headers) as r:
        assert (r.status, (await r.json())["code"]) == (401, code)
    async with client.get("/ws", headers=upgrade(token)) as r:
        assert (r.status, (await r.json())["code"]) == (401, code)


async def test_logout_ends_the_session_everywhere_and_closes_its_sockets(client: Any) -> None:
    account = await register(client, "dara")
    async with await login(client, "dara") as r:
        other = await r.json()  # a second login: another session, untouched by the logout
    ws = await client.ws_connect("/ws", headers=bearer(account))
    kept = await client.ws_connect("/ws", headers=bearer(other))
    await WsClient(ws).result("subscribe", channel="room:lobby")

    async with client.post("/v1/auth/logout", headers=bearer(account)) as r:
        assert (r.status, await r.json()) == (200, {"logged_out": True})
    assert await closed_with(ws) == 4501
    async with client.get("/v1/me", headers=bearer(account)) as r:
        assert (r.status, (await r.json())["code"]) == (401, "session_revoked")
    async with client.get("/ws", headers=upgrade(account["access_token"])) as r:
        assert (r.status, (await r.json())["code"]) == (401, "session_revoked")
    async with client.post(
        "/v1/auth/refresh", json={"refresh_token": account["refresh_token"]}
    ) as r:
        assert (r.status, (await r.json())["code"]) == (401, "invalid_refresh_token")

    assert "ts" in await WsClient(kept).result("ping")
    async with client.get("/v1/me", headers=bearer(other)) as r:
        assert r.status == 200
    # Logging out with the refresh token (the access token may be long expired) works too,
    # twice is harmless, and without any credential is refused.
    for _ in range(2):
        async with client.post(
            "/v1/auth/logout", json={"refresh_token": other["refresh_token"]}
        ) as r:
            assert r.status == 200
    assert await closed_with(kept) == 4501
    async with client.post("/v1/auth/logout") as r:
        assert (r.status, (await r.json())["code"]) == (401, "unauthorized")
    async with client.post("/v1/auth/logout", json={"refresh_token": "made-up"}) as r:
        assert (r.status, (await r.json())["code"]) == (401, "invalid_refresh_token")


async def test_a_reused_refresh_token_closes_the_sessions_sockets(client: Any) -> None:
    account = await register(client, "dara")
    async with client.post(
        "/v1/auth/refresh", json={"refresh_token": account["refresh_token"]}
    ) as r:
        rotated = await r.json()
    ws = await client.ws_connect("/ws", headers=bearer(rotated))
    # Someone replays the old refresh token: the whole session ends, the socket too.
    async with client.post(
        "/v1/auth/refresh", json={"refresh_token": account["refresh_token"]}
    ) as r:
        assert r.status == 401
    assert await closed_with(ws) == 4501
    async with client.get("/v1/me", headers=bearer(rotated)) as r:
        assert (await r.json())["code"] == "session_revoked"


async def test_a_socket_is_closed_when_its_token_expires_unless_renewed(
    make_client: Any,
) -> None:
    client = await make_client(ws_heartbeat=0.2)
    # Expired 25 s ago: still inside the 30 s verification leeway, so the handshake passes,
    # and past it a few seconds later.
    stale = token_for("u1", exp=int(time.time()) - 25)
    expiring = await client.ws_connect("/ws", headers={"Authorization": f"Bearer {stale}"})
    renewed = await client.ws_connect("/ws", headers={"Authorization": f"Bearer {stale}"})
    result = await WsClient(renewed).result("auth", token=token_for("u1"))
    assert result["user_id"] == "u1"
    assert result["expires_at"] > time.time()
    closing = asyncio.create_task(closed_with(expiring))
    # Both are visited by the same heartbeat rounds; the renewed one keeps answering.
    while not closing.done():
        assert "ts" in await WsClient(renewed).result("ping")
        await asyncio.sleep(0.05)
    assert closing.result() == 4500
    assert "ts" in await WsClient(renewed).result("ping")
    async with client.get("/metrics") as r:
        assert "moosic_ws_auth_closes_total 1" in await r.text()
    await renewed.close()


async def test_auth_refuses_bad_tokens_and_other_users(client: Any) -> None:
    conn = await WsClient.connect(client, token_for("u1"))
    assert (await conn.call("auth", token="nonsense"))["code"] == "unauthorized"
    assert (await conn.call("auth", token=token_for("u2")))["code"] == "forbidden"
    late = token_for("u1", exp=int(time.time()) - 3600)
    assert (await conn.call("auth", token=late))["code"] == "token_expired"
    await conn.close()


# -- malformed input -------------------------------------------------------------------------


async def test_deeply_nested_frames_and_bodies_are_errors_not_crashes(client: Any) -> None:
    conn = await WsClient.connect(client, token_for("u1"))
    for depth in (2000, 20000):
        nested = "[" * depth + "]" * depth
        await conn.send_raw(f'{{"op":"publish","id":1,"channel":"room:a","data":{{"a":{nested}}}}}')
        error = await conn.receive()
        assert (error["op"], error["code"]) == ("error", "invalid_frame")
    assert "ts" in await conn.result("ping")
    await conn.close()
    nested = "[" * 5000 + "]" * 5000
    async with client.post(
        "/v1/channels/room:a/messages",
        data=f'{{"data":{{"a":{nested}}}}}'.encode(),
        headers={"Authorization": f"Bearer {token_for('u1')}"},
    ) as r:
        assert (r.status, (await r.json())["code"]) == (400, "invalid_json")
    async with client.get("/metrics") as r:
        assert "moosic_internal_errors_total 0" in await r.text()


async def test_offsets_beyond_what_clients_can_hold_are_refused(client: Any) -> None:
    conn = await WsClient.connect(client, token_for("u1"))
    huge = 2**63 + 5
    error = await conn.call("subscribe", channel="room:a", since={"offset": huge, "epoch": ""})
    assert error["code"] == "invalid_params"
    async with client.get(
        f"/v1/channels/room:a/events?since={huge}&timeout=0",
        headers={"Authorization": f"Bearer {token_for('u1')}"},
    ) as r:
        assert (r.status, (await r.json())["code"]) == (400, "invalid_params")
    await conn.close()
