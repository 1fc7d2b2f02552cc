"""The server API (``/server/v1``) on two gateway processes sharing one Redis (and a Redis
Cluster): keys, each call across nodes, a held video's approval, the audit log, the private port."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.clients import WsClient, bearer, register
from tests.support.media import make_clip
from tests.support.servers import GatewayNode, SharedRedis, free_port, node_env, running_nodes

OLD_KEY = "old-key-0123456789-abcdefghijklmnopqrstuv"
NEW_KEY = "new-key-9876543210-zyxwvutsrqponmlkjihgfe"
KEYS = f"{OLD_KEY},{NEW_KEY}"
MEDIA = {
    "MOOSIC_MEDIA_MODERATION": "hold",
    "MOOSIC_MEDIA_LADDER": "72:96,96:128,144:192",
    "MOOSIC_MEDIA_SEGMENT_SECONDS": "1",
}


@pytest.fixture
def nodes(shared_redis: SharedRedis, tmp_path: Path) -> Iterator[list[GatewayNode]]:
    env = node_env(
        shared_redis,
        tmp_path,
        MOOSIC_SERVER_API_KEYS=KEYS,
        MOOSIC_MEDIA_DIR=str(tmp_path / "media"),
        **MEDIA,
    )
    with running_nodes(env, tmp_path) as started:
        yield started


def key(value: str = NEW_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def api(
    http: aiohttp.ClientSession,
    node: GatewayNode,
    method: str,
    path: str,
    status: int = 200,
    *,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> Any:
    async with http.request(
        method, node.base_url + "/server/v1" + path, headers=headers or key(), **kwargs
    ) as response:
        body = await response.json()
        assert response.status == status, body
        return body


async def connect(http: aiohttp.ClientSession, node: GatewayNode, token: str) -> WsClient:
    return await WsClient.connect(http, token, url=node.base_url + "/ws")


async def closed_with(ws: WsClient) -> int | None:
    """Wait for the server's close frame; return its code."""
    async with asyncio.timeout(20):
        while True:
            message = await ws.ws.receive()
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return ws.ws.close_code


async def until(check: Any, timeout: float = 20.0) -> Any:
    async with asyncio.timeout(timeout):
        while not (found := await check()):
            await asyncio.sleep(0.1)
    return found


async def test_keys_are_required_and_both_rotation_keys_work(
    nodes: list[GatewayNode], http: aiohttp.ClientSession
) -> None:
    a, _b = nodes
    alice = await register(http, "alice", base=a.base_url)
    cases: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer " + NEW_KEY[:-1] + "x"},
        {"Authorization": "Basic " + NEW_KEY},
        {"X-Api-Key": OLD_KEY + "x"},
        bearer(alice),  # a user's access token is no API key
    ]
    for headers in cases:
        async with http.get(a.base_url + "/server/v1/node/channels", headers=headers) as response:
            body = await response.json()
            assert response.status == 401, headers
            assert body["code"] == "invalid_api_key"
            assert set(body) == {"code", "message", "retryable"}
    for headers in (key(OLD_KEY), key(NEW_KEY), {"X-Api-Key": OLD_KEY}):
        body = await api(http, a, "GET", "/node/channels", headers=headers)
        assert body["count"] == 0


async def test_calls_act_across_nodes_and_the_key_is_never_logged(
    nodes: list[GatewayNode], http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    a, b = nodes
    alice = await register(http, "alice", base=a.base_url)
    bob = await register(http, "bob", base=b.base_url)
    on_b = await connect(http, b, bob["access_token"])
    await on_b.result("subscribe", channel="room:news")
    await on_b.result("subscribe", channel="room:sports")

    # Publish as system on node A: bob's socket on node B gets it; it is in the history.
    published = await api(
        http, a, "POST", "/publish", 201, json={"channel": "room:news", "data": {"hello": 1}}
    )
    assert (published["channel"], published["offset"], published["duplicate"]) == (
        "room:news",
        1,
        False,
    )
    event = await on_b.next_event()
    assert (event["channel"], event["from"], event["data"]) == ("room:news", "system", {"hello": 1})
    page = await api(http, b, "GET", "/channels/room:news/messages?limit=10")
    assert [(m["from"], m["data"]) for m in page["messages"]] == [("system", {"hello": 1})]

    # Broadcast: one payload, several channels, an answer per channel.
    answer = await api(
        http,
        a,
        "POST",
        "/broadcast",
        json={
            "channels": ["room:news", "room:sports", "room:empty", "nope"],
            "data": {"flash": True},
        },
    )
    assert (answer["published"], answer["failed"]) == (3, 1)
    by_channel = {r["channel"]: r for r in answer["results"]}
    assert by_channel["room:news"]["offset"] == 2
    assert by_channel["room:sports"]["offset"] == 1
    assert by_channel["nope"]["error"]["code"] == "invalid_channel"
    got = {(e["channel"], e["data"]["flash"]) for e in [await on_b.next_event() for _ in "12"]}
    assert got == {("room:news", True), ("room:sports", True)}
    # Above the REST body limit (64 KiB), within the broadcast's own (512 KiB).
    wide = [f"room:{'w' * 60}{i:04d}" for i in range(1000)]
    answer = await api(http, a, "POST", "/broadcast", json={"channels": wide, "data": {}})
    assert (answer["published"], answer["failed"]) == (1000, 0)
    too_many = [f"room:r{i}" for i in range(1001)]
    refused = await api(http, a, "POST", "/broadcast", 400, json={"channels": too_many, "data": {}})
    assert refused["code"] == "invalid_params"

    # Presence across nodes: bob is in room:news (his socket is on node B), asked of node A.
    async def present() -> Any:
        body = await api(http, a, "GET", "/channels/room:news/presence")
        return body if body["count"] else None

    presence = await until(present)
    assert presence == {"channel": "room:news", "users": [bob["user_id"]], "count": 1}

    # This node's connections and channels: bob's socket is on B, none on A.
    on_node_b = await api(http, b, "GET", "/node/connections")
    assert on_node_b["count"] == 1
    assert on_node_b["connections"][0]["user_id"] == bob["user_id"]
    assert on_node_b["connections"][0]["subscriptions"] == 2
    assert (await api(http, a, "GET", "/node/connections"))["count"] == 0
    channels_b = await api(http, b, "GET", "/node/channels")
    assert {c["channel"] for c in channels_b["channels"]} == {"room:news", "room:sports"}
    assert channels_b["count"] == 2

    # Disconnect through node A closes bob's socket on node B with 4503.
    done = await api(http, a, "POST", f"/users/{bob['user_id']}/disconnect", json={})
    assert done == {"user_id": bob["user_id"], "close_code": 4503}
    assert await closed_with(on_b) == 4503

    # Ending bob's sessions through node A: his refresh token fails, his socket closes (4501),
    # and his access token is refused on both nodes.
    again = await connect(http, b, bob["access_token"])
    await again.result("subscribe", channel="room:news")
    ended = await api(http, a, "POST", f"/users/{bob['user_id']}/end-sessions")
    assert ended == {"user_id": bob["user_id"], "sessions_ended": 1}
    assert await closed_with(again) == 4501
    async with http.post(
        a.base_url + "/v1/auth/refresh", json={"refresh_token": bob["refresh_token"]}
    ) as response:
        assert (response.status, (await response.json())["code"]) == (401, "invalid_refresh_token")

    async def refused_on_b() -> bool:
        async with http.get(b.base_url + "/v1/me", headers=bearer(bob)) as response:
            return response.status == 401

    await until(refused_on_b)
    # Alice's session is untouched.
    async with http.get(a.base_url + "/v1/me", headers=bearer(alice)) as response:
        assert response.status == 200

    # Bad ids are refused with the usual envelope.
    assert (await api(http, a, "POST", "/users/not a user/disconnect", 400, json={}))[
        "code"
    ] == "invalid_params"
    assert (await api(http, a, "GET", "/channels/bad/presence", 400))["code"] == "invalid_channel"

    # Every call is audited, by key number and fingerprint; no key in any line of either node.
    for node in nodes:
        text = node.log_path.read_text()
        assert OLD_KEY not in text
        assert NEW_KEY not in text
        assert OLD_KEY[:16] not in text
        assert NEW_KEY[:16] not in text
    audit_a = a.log_path.read_text()
    assert "publish channel=room:news" in audit_a
    assert f"disconnect user_id={bob['user_id']}" in audit_a
    assert f"end_sessions user_id={bob['user_id']}" in audit_a
    assert "key #1 (" in audit_a


async def test_a_held_video_approved_through_the_api_reaches_ready_and_feeds(
    nodes: list[GatewayNode], http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    a, b = nodes
    author = await register(http, "author", base=a.base_url)
    fan = await register(http, "fan", base=b.base_url)
    async with http.put(
        b.base_url + f"/v1/users/{author['user_id']}/follow", headers=bearer(fan)
    ) as response:
        assert response.status == 200
    owner_ws = await connect(http, a, author["access_token"])
    await owner_ws.result("subscribe", channel=f"user:{author['user_id']}")
    fan_ws = await connect(http, b, fan["access_token"])
    await fan_ws.result("subscribe", channel=f"user:{fan['user_id']}")

    clip = make_clip(tmp_path / "clip.mp4").read_bytes()
    async with http.post(
        a.base_url + "/v1/media/uploads",
        json={"content_type": "video/mp4", "size": len(clip), "title": "held clip"},
        headers=bearer(author),
    ) as response:
        created = await response.json()
        assert response.status == 201, created
    video_id = created["video_id"]
    upload = created["upload"]
    form = aiohttp.FormData()
    for name, value in upload["fields"].items():
        form.add_field(name, value)
    form.add_field("file", clip, filename="clip.mp4", content_type="video/mp4")
    async with http.post(upload["url"], data=form) as response:
        assert response.status == 204

    states = []
    while not states or states[-1] != "moderating":
        states.append((await owner_ws.next_event(timeout=120))["data"]["state"])
    assert states == ["processing", "moderating"]

    held = await api(http, b, "GET", "/videos/held")
    assert [(v["video_id"], v["owner"], v["title"]) for v in held["videos"]] == [
        (video_id, author["user_id"], "held clip")
    ]
    decided = await api(
        http, b, "POST", f"/videos/{video_id}/moderation", json={"decision": "approve"}
    )
    assert decided == {"video_id": video_id, "owner": author["user_id"], "state": "ready"}

    ready = await owner_ws.next_event()
    assert ready["data"] == {
        "type": "video_state",
        "video_id": video_id,
        "state": "ready",
        "moderation": "approved",
    }
    push = await fan_ws.next_push(op="feed")
    assert push["item_id"] == video_id

    async def in_feed() -> bool:
        async with http.get(b.base_url + "/v1/feed", headers=bearer(fan)) as response:
            page = await response.json()
            return [i["item_id"] for i in page["items"]] == [video_id]

    await until(in_feed)
    # Decided once: again is refused, and the queue is empty.
    again = await api(
        http, a, "POST", f"/videos/{video_id}/moderation", 409, json={"decision": "reject"}
    )
    assert again["code"] == "video_not_held"
    assert (await api(http, a, "GET", "/videos/held"))["videos"] == []
    missing = await api(
        http, a, "POST", "/videos/nope/moderation", 404, json={"decision": "approve"}
    )
    assert missing["code"] == "not_found"


@pytest.mark.parametrize("shared_redis", ["redis"], indirect=True)
async def test_the_private_port_serves_the_server_api_only(
    shared_redis: SharedRedis, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    private = free_port()
    env = node_env(
        shared_redis,
        tmp_path,
        MOOSIC_SERVER_API_KEYS=KEYS,
        MOOSIC_SERVER_API_PORT=str(private),
        MOOSIC_SERVER_API_HOST="127.0.0.1",
    )
    node = GatewayNode(env, tmp_path / "private.log").start()
    try:
        base = f"http://127.0.0.1:{private}"
        async with http.get(base + "/server/v1/node/channels", headers=key()) as response:
            assert response.status == 200
        async with http.get(base + "/server/v1/admin/") as response:
            assert response.status == 200
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
            assert '<script src="admin.js">' in await response.text()
        for path in ("/server/v1/node/channels", "/server/v1/admin/"):
            async with http.get(node.base_url + path, headers=key()) as response:
                assert response.status == 404
                assert (await response.json())["code"] == "not_found"
        async with http.get(base + "/healthz") as response:
            assert response.status == 404  # the private port serves nothing else
        async with http.get(node.base_url + "/healthz") as response:
            assert response.status == 200
    finally:
        node.stop()


@pytest.mark.parametrize("shared_redis", ["redis"], indirect=True)
async def test_without_keys_the_server_api_is_off(
    shared_redis: SharedRedis, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    node = GatewayNode(node_env(shared_redis, tmp_path), tmp_path / "off.log").start()
    try:
        async with http.get(node.base_url + "/server/v1/node/channels", headers=key()) as r:
            assert (r.status, (await r.json())["code"]) == (404, "not_found")
    finally:
        node.stop()


async def test_the_nodes_list_every_live_node_with_its_card(
    shared_redis: SharedRedis, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    env = node_env(shared_redis, tmp_path, MOOSIC_SERVER_API_KEYS=KEYS, MOOSIC_PRESENCE_TTL="3")
    with running_nodes(env, tmp_path) as (a, b):
        await _nodes_listed(a, b, http)


async def _nodes_listed(a: GatewayNode, b: GatewayNode, http: aiohttp.ClientSession) -> None:
    user = await register(http, "carded", base=b.base_url)
    ws = await connect(http, b, user["access_token"])
    await ws.result("subscribe", channel="room:cards")

    async def listed() -> dict[str, dict[str, Any]]:
        found = await api(http, a, "GET", "/nodes")
        assert found["count"] == len(found["nodes"])
        return {str(n.get("address", "")).rsplit(":", 1)[-1]: n for n in found["nodes"]}

    # Each node writes its card at every presence heartbeat (a third of MOOSIC_PRESENCE_TTL).
    async with asyncio.timeout(60):
        while True:
            cards = await listed()
            card = cards.get(str(b.port))
            if card is not None and card["connections"] >= 1 and card["channels"] >= 1:
                break
            await asyncio.sleep(0.5)
    assert set(cards) == {str(a.port), str(b.port)}
    for port, found in cards.items():
        assert found["alive"] is True
        assert isinstance(found["node"], str)
        assert found["node"]
        assert isinstance(found["started_at"], int)
        assert found["address"].endswith(":" + port)
    await api(http, a, "GET", "/nodes", 401, headers=key("x" * 40))
    await ws.close()
