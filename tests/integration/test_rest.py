"""REST endpoints over real sockets: accounts, the chat fallback, groups, and error shapes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.clients import PASSWORD, WsClient, bearer, register


async def test_health_and_readiness(client: Any) -> None:
    async with client.get("/healthz") as r:
        assert (r.status, await r.json()) == (200, {"status": "ok"})
    async with client.get("/readyz") as r:
        assert r.status == 200
        assert await r.json() == {"status": "ready", "store": True, "broker": True}
    async with client.get("/metrics") as r:
        text = await r.text()
        assert "moosic_ws_connections 0" in text


async def test_register_login_refresh_rotation_and_reuse(client: Any) -> None:
    account = await register(client, "dara")
    assert account["token_type"] == "Bearer"
    assert account["expires_in"] == 900
    async with client.post(
        "/v1/auth/register", json={"username": "dara", "password": PASSWORD}
    ) as r:
        assert (r.status, (await r.json())["code"]) == (409, "username_taken")
    async with client.post(
        "/v1/auth/login", json={"username": "dara", "password": "wrong password"}
    ) as r:
        assert (r.status, (await r.json())["code"]) == (401, "invalid_credentials")
    async with client.post(
        "/v1/auth/login", json={"username": "nobody", "password": PASSWORD}
    ) as r:
        assert (r.status, (await r.json())["code"]) == (401, "invalid_credentials")
    async with client.post("/v1/auth/login", json={"username": "dara", "password": PASSWORD}) as r:
        assert r.status == 200
        login = await r.json()
    assert login["user_id"] == account["user_id"]
    async with client.get("/v1/me", headers=bearer(login)) as r:
        assert await r.json() == {"user_id": account["user_id"], "username": "dara"}
    old = login["refresh_token"]
    async with client.post("/v1/auth/refresh", json={"refresh_token": old}) as r:
        assert r.status == 200
        rotated = await r.json()
    assert rotated["refresh_token"] != old
    # Reusing the old token is refused, and it revokes the family: the new one stops working.
    async with client.post("/v1/auth/refresh", json={"refresh_token": old}) as r:
        assert (r.status, (await r.json())["code"]) == (401, "invalid_refresh_token")
    async with client.post(
        "/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}
    ) as r:
        assert (r.status, (await r.json())["code"]) == (401, "invalid_refresh_token")
    # Another login's family is unaffected.
    async with client.post(
        "/v1/auth/refresh", json={"refresh_token": account["refresh_token"]}
    ) as r:
        assert r.status == 200


@pytest.mark.parametrize(
    "body",
    [
        {"username": "ab", "password": PASSWORD},
        {"username": "Has Space", "password": PASSWORD},
        {"username": "fine_name", "password": "short"},
        {"username": "fine_name"},
        {"username": 5, "password": PASSWORD},
    ],
)
async def test_register_validation(client: Any, body: dict[str, Any]) -> None:
    async with client.post("/v1/auth/register", json=body) as r:
        assert r.status == 400
        assert (await r.json())["code"] == "invalid_params"


async def test_auth_is_country_gated(make_client: Any) -> None:
    client = await make_client(dev=False)
    async with client.post(
        "/v1/auth/register", json={"username": "far", "password": PASSWORD}
    ) as r:
        assert (r.status, (await r.json())["code"]) == (403, "country_not_allowed")


async def test_country_header_believed_only_from_trusted_proxies(make_client: Any) -> None:
    import ipaddress

    trusted = (ipaddress.ip_network("127.0.0.0/8"),)
    client = await make_client(dev=False, trusted_proxies=trusted)
    body = {"username": "proxied", "password": PASSWORD}
    async with client.post(
        "/v1/auth/register", json=body, headers={"CloudFront-Viewer-Country": "US"}
    ) as r:
        assert (r.status, (await r.json())["code"]) == (403, "country_not_allowed")
    async with client.post(
        "/v1/auth/register", json=body, headers={"CloudFront-Viewer-Country": "KH"}
    ) as r:
        assert r.status == 201
    untrusted = await make_client(dev=False)
    async with untrusted.post(
        "/v1/auth/register", json=body, headers={"CloudFront-Viewer-Country": "KH"}
    ) as r:
        assert r.status == 403


async def test_publish_and_paginate_over_rest(client: Any) -> None:
    alice = await register(client, "alice")
    for n in range(5):
        async with client.post(
            "/v1/channels/room:r/messages", json={"data": {"n": n}}, headers=bearer(alice)
        ) as r:
            assert r.status == 201
            assert (await r.json())["offset"] == n + 1
    async with client.post(
        "/v1/channels/room:r/messages",
        json={"data": {"n": 9}, "client_msg_id": "c1"},
        headers=bearer(alice),
    ) as r:
        assert r.status == 201
    async with client.post(
        "/v1/channels/room:r/messages",
        json={"data": {"n": 9}, "client_msg_id": "c1"},
        headers=bearer(alice),
    ) as r:
        assert r.status == 200
        assert (await r.json())["duplicate"] is True
    seen: list[int] = []
    before = None
    while True:
        url = "/v1/channels/room:r/messages?limit=2" + (f"&before={before}" if before else "")
        async with client.get(url, headers=bearer(alice)) as r:
            page = await r.json()
        seen += [m["data"]["n"] for m in page["messages"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == [9, 4, 3, 2, 1, 0]


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "status", "code"),
    [
        ("post", "/v1/channels/room:r/messages", {"data": b"{"}, 400, "invalid_json"),
        ("post", "/v1/channels/room:r/messages", {"json": {"data": 5}}, 400, "invalid_params"),
        ("post", "/v1/channels/room:r/messages", {"json": {}}, 400, "invalid_params"),
        ("post", "/v1/channels/nope/messages", {"json": {"data": {}}}, 400, "invalid_channel"),
        ("post", "/v1/channels/video:v/messages", {"json": {"data": {}}}, 403, "forbidden"),
        ("get", "/v1/channels/room:r/messages?limit=abc", {}, 400, "invalid_params"),
        ("get", "/v1/channels/room:r/messages?before=NOPE", {}, 404, "not_found"),
        ("get", "/v1/no-such-route", {}, 404, "not_found"),
        ("put", "/v1/channels/room:r/messages", {}, 405, "method_not_allowed"),
        ("post", "/v1/channels/room:r/messages", {"data": b"x" * 70000}, 413, "request_too_large"),
    ],
)
async def test_rest_errors(
    client: Any, method: str, url: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    alice = await register(client, "alice")
    async with client.request(method, url, headers=bearer(alice), **kwargs) as r:
        body = await r.json()
        assert (r.status, body["code"]) == (status, code), body
        assert body["message"]
        assert isinstance(body["retryable"], bool)


async def test_rest_needs_a_token(client: Any) -> None:
    async with client.get("/v1/channels/room:r/messages") as r:
        assert (r.status, (await r.json())["code"]) == (401, "unauthorized")


async def test_long_poll_returns_at_once_or_waits(client: Any) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    async with client.post(
        "/v1/channels/room:lp/messages", json={"data": {"n": 1}}, headers=bearer(alice)
    ) as r:
        assert r.status == 201
    async with client.get("/v1/channels/room:lp/events?since=0", headers=bearer(bob)) as r:
        body = await r.json()
    assert [e["data"] for e in body["events"]] == [{"n": 1}]
    assert body["next_since"] == 1
    # Nothing new: the poll waits until a message arrives, then returns it.
    waiting = asyncio.create_task(
        client.get("/v1/channels/room:lp/events?since=1&timeout=20", headers=bearer(bob))
    )
    await asyncio.sleep(0.2)
    assert not waiting.done()
    async with client.post(
        "/v1/channels/room:lp/messages", json={"data": {"n": 2}}, headers=bearer(alice)
    ) as r:
        assert r.status == 201
    async with await waiting as r:
        body = await r.json()
    assert [e["data"] for e in body["events"]] == [{"n": 2}]
    assert body["next_since"] == 2
    # A bounded wait with nothing new returns an empty page.
    async with client.get(
        "/v1/channels/room:lp/events?since=2&timeout=0.2", headers=bearer(bob)
    ) as r:
        body = await r.json()
    assert (body["events"], body["next_since"]) == ([], 2)


async def test_long_poll_cap(make_client: Any) -> None:
    client = await make_client(max_longpolls=1)
    alice = await register(client, "alice")
    first = asyncio.create_task(
        client.get("/v1/channels/room:cap/events?timeout=5", headers=bearer(alice))
    )
    await asyncio.sleep(0.2)
    async with client.get("/v1/channels/room:cap/events?timeout=5", headers=bearer(alice)) as r:
        body = await r.json()
        assert (r.status, body["code"], body["retryable"]) == (503, "server_busy", True)
    first.cancel()


async def test_groups_lifecycle(client: Any) -> None:
    owner = await register(client, "owner")
    ann = await register(client, "ann")
    ben = await register(client, "ben")
    outsider = await register(client, "outsider")
    async with client.post(
        "/v1/groups", json={"name": "Family", "members": [ann["user_id"]]}, headers=bearer(owner)
    ) as r:
        assert r.status == 201
        group = await r.json()
    gid = group["group_id"]
    assert group["channel"] == f"group:{gid}"
    assert sorted(group["members"]) == sorted([owner["user_id"], ann["user_id"]])
    async with client.get(f"/v1/groups/{gid}", headers=bearer(outsider)) as r:
        assert (r.status, (await r.json())["code"]) == (404, "not_found")
    async with client.post(
        f"/v1/groups/{gid}/members", json={"user_id": ben["user_id"]}, headers=bearer(ann)
    ) as r:
        assert (r.status, (await r.json())["code"]) == (403, "forbidden")
    async with client.post(
        f"/v1/groups/{gid}/members", json={"user_id": "ghost"}, headers=bearer(owner)
    ) as r:
        assert (r.status, (await r.json())["code"]) == (404, "not_found")
    async with client.post(
        f"/v1/groups/{gid}/members", json={"user_id": ben["user_id"]}, headers=bearer(owner)
    ) as r:
        assert (await r.json())["added"] is True

    # Ben listens live; when removed, his subscription ends with a reason.
    ben_ws = await WsClient.connect(client, ben["access_token"])
    await ben_ws.result("subscribe", channel=f"group:{gid}")
    ann_ws = await WsClient.connect(client, ann["access_token"])
    await ann_ws.result("publish", channel=f"group:{gid}", data={"text": "welcome ben"})
    assert (await ben_ws.next_event())["data"] == {"text": "welcome ben"}
    out = await WsClient.connect(client, outsider["access_token"])
    assert (await out.call("subscribe", channel=f"group:{gid}"))["code"] == "forbidden"

    async with client.delete(
        f"/v1/groups/{gid}/members/{ben['user_id']}", headers=bearer(owner)
    ) as r:
        assert (await r.json())["removed"] is True
    assert await ben_ws.next_push(op="unsubscribed") == {
        "op": "unsubscribed",
        "channel": f"group:{gid}",
        "reason": "removed_from_group",
    }
    await ann_ws.result("publish", channel=f"group:{gid}", data={"text": "bye"})
    assert (await ben_ws.call("publish", channel=f"group:{gid}", data={}))["code"] == "forbidden"
    assert not ben_ws.pushes
    # Members leave by themselves; the owner cannot.
    async with client.delete(
        f"/v1/groups/{gid}/members/{ann['user_id']}", headers=bearer(ann)
    ) as r:
        assert (await r.json())["removed"] is True
    async with client.delete(
        f"/v1/groups/{gid}/members/{owner['user_id']}", headers=bearer(owner)
    ) as r:
        assert (r.status, (await r.json())["code"]) == (403, "forbidden")


async def test_group_size_cap(make_client: Any) -> None:
    client = await make_client(max_group_members=2)
    owner = await register(client, "owner")
    a = await register(client, "aaa")
    b = await register(client, "bbb")
    async with client.post(
        "/v1/groups", json={"name": "g", "members": [a["user_id"]]}, headers=bearer(owner)
    ) as r:
        gid = (await r.json())["group_id"]
    async with client.post(
        f"/v1/groups/{gid}/members", json={"user_id": b["user_id"]}, headers=bearer(owner)
    ) as r:
        assert (r.status, (await r.json())["code"]) == (409, "limit_exceeded")


async def test_user_lookup(client: Any) -> None:
    alice = await register(client, "alice")
    async with client.get("/v1/users/by-username/alice", headers=bearer(alice)) as r:
        assert await r.json() == {"user_id": alice["user_id"], "username": "alice"}
    async with client.get("/v1/users/by-username/zed", headers=bearer(alice)) as r:
        assert r.status == 404


async def test_long_poll_is_not_ended_by_typing_or_receipts(client: Any) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    dm = "dm:" + ":".join(sorted([alice["user_id"], bob["user_id"]]))
    poll = asyncio.create_task(
        client.get(f"/v1/channels/{dm}/events?timeout=20", headers=bearer(bob))
    )
    await asyncio.sleep(0.2)
    alice_ws = await WsClient.connect(client, alice["access_token"])
    await alice_ws.result("typing", channel=dm)  # an ephemeral push: the poll keeps waiting
    await asyncio.sleep(0.2)
    assert not poll.done()
    await alice_ws.result("publish", channel=dm, data={"text": "now"})
    async with await poll as r:
        body = await r.json()
    assert [e["data"] for e in body["events"]] == [{"text": "now"}]
