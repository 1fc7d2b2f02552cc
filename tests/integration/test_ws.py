"""The WebSocket endpoint over real sockets: auth, ops, authorisation, and bad input."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import jwt
import orjson
import pytest

from tests.conftest import JWT_SECRET
from tests.support.clients import WsClient, register


def token_for(user_id: str, **changes: Any) -> str:
    now = int(time.time())
    claims = {"sub": user_id, "iat": now, "exp": now + 3600, "iss": "moosic", "aud": "moosic"}
    claims.update(changes)
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    ("headers", "query", "code"),
    [
        ({}, "", "unauthorized"),
        ({"Authorization": "Bearer nonsense"}, "", "unauthorized"),
        ({"Authorization": "Basic abc"}, "", "unauthorized"),
        ({}, "?token=" + token_for("u1", exp=int(time.time()) - 3600), "token_expired"),
        ({}, "?token=" + token_for("u1", aud="someone-else"), "unauthorized"),
        ({}, "?token=" + token_for("u1", iss="someone-else"), "unauthorized"),
        ({}, "?token=" + jwt.encode({"sub": "u1"}, JWT_SECRET, algorithm="HS256"), "unauthorized"),
    ],
)
async def test_bad_tokens_are_refused_before_the_upgrade(
    client: Any, headers: dict[str, str], query: str, code: str
) -> None:
    async with client.get("/ws" + query, headers=headers) as response:
        assert response.status == 401
        body = await response.json()
        assert body["code"] == code
        assert body["message"]


async def test_token_in_query_string_is_accepted(client: Any) -> None:
    ws = await client.ws_connect("/ws?token=" + token_for("u1"))
    conn = WsClient(ws)
    assert "ts" in await conn.result("ping")
    await conn.close()


async def test_alg_none_token_is_refused(client: Any) -> None:
    unsigned = jwt.encode(
        {"sub": "u1", "iat": 1, "exp": 2**40, "iss": "moosic", "aud": "moosic"},
        key=None,
        algorithm="none",
    )
    async with client.get("/ws?token=" + unsigned) as response:
        assert response.status == 401


async def test_disallowed_country_is_refused(make_client: Any) -> None:
    client = await make_client(dev=False)
    async with client.get("/ws?token=" + token_for("u1")) as response:
        assert response.status == 403
        assert (await response.json())["code"] == "country_not_allowed"


async def test_plain_get_without_upgrade_gets_a_clear_error(client: Any) -> None:
    async with client.get("/ws?token=" + token_for("u1")) as response:
        assert response.status == 400
        assert (await response.json())["code"] == "invalid_frame"


async def test_chat_between_two_users_in_a_dm(client: Any) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    a = await WsClient.connect(client, alice["access_token"])
    b = await WsClient.connect(client, bob["access_token"])
    dm = "dm:" + ":".join(sorted([alice["user_id"], bob["user_id"]]))
    await a.result("subscribe", channel=dm)
    await b.result("subscribe", channel=dm)
    first = await a.result("publish", channel=dm, data={"text": "hello"}, client_msg_id="m1")
    second = await b.result("publish", channel=dm, data={"text": "hi!"})
    assert (first["offset"], second["offset"]) == (1, 2)
    assert first["duplicate"] is False
    assert first["message_id"] < second["message_id"]
    for conn in (a, b):
        got = [await conn.next_event(), await conn.next_event()]
        assert [e["data"]["text"] for e in got] == ["hello", "hi!"]
        assert [e["offset"] for e in got] == [1, 2]
        assert got[0]["client_msg_id"] == "m1"
        assert got[0]["channel"] == dm
    history = await a.result("history", channel=dm, limit=1)
    assert [m["data"] for m in history["messages"]] == [{"text": "hi!"}]
    older = await a.result("history", channel=dm, before=history["next_before"])
    assert [m["data"] for m in older["messages"]] == [{"text": "hello"}]
    assert older["next_before"] is None


async def test_retried_publish_with_client_msg_id_is_stored_once(client: Any) -> None:
    alice = await register(client, "alice")
    a = await WsClient.connect(client, alice["access_token"])
    await a.result("subscribe", channel="room:r")
    first = await a.result("publish", channel="room:r", data={"n": 1}, client_msg_id="same")
    again = await a.result("publish", channel="room:r", data={"n": 2}, client_msg_id="same")
    assert again["duplicate"] is True
    assert (again["message_id"], again["offset"]) == (first["message_id"], first["offset"])
    assert (await a.next_event())["data"] == {"n": 1}
    history = await a.result("history", channel="room:r")
    assert [m["data"] for m in history["messages"]] == [{"n": 1}]
    with pytest.raises(TimeoutError):
        await a.next_push(timeout=0.3)


@pytest.mark.parametrize(
    ("channel", "op", "code"),
    [
        ("dm:aaa:bbb", "subscribe", "forbidden"),
        ("dm:aaa:bbb", "publish", "forbidden"),
        ("user:someone-else", "subscribe", "forbidden"),
        ("user:someone-else", "publish", "forbidden"),
        ("video:v1", "publish", "forbidden"),
        ("group:nope", "subscribe", "forbidden"),
        ("group:nope", "publish", "forbidden"),
        ("group:nope", "history", "forbidden"),
        ("dm:bbb:aaa", "subscribe", "invalid_channel"),
        ("dm:aaa:aaa", "subscribe", "invalid_channel"),
        ("lobby", "subscribe", "invalid_channel"),
        ("room:", "subscribe", "invalid_channel"),
        ("room:a b", "subscribe", "invalid_channel"),
        ("teams:x", "publish", "invalid_channel"),
    ],
)
async def test_channel_rules(client: Any, channel: str, op: str, code: str) -> None:
    me = await WsClient.connect(client, token_for("me"))
    fields: dict[str, Any] = {"channel": channel}
    if op == "publish":
        fields["data"] = {"text": "x"}
    frame = await me.call(op, **fields)
    assert frame["op"] == "error"
    assert frame["code"] == code
    assert frame["retryable"] is False


async def test_open_channels(client: Any) -> None:
    me = await WsClient.connect(client, token_for("me"))
    for channel in ("video:v1", "user:me", "room:a.b-c_d"):
        assert (await me.result("subscribe", channel=channel))["channel"] == channel
    assert (await me.result("unsubscribe", channel="video:v1"))["unsubscribed"] is True
    assert (await me.result("unsubscribe", channel="video:v1"))["unsubscribed"] is False


BAD_FRAMES = [
    ("not json", "invalid_json", None),
    ('{"op": "ping", "id": 1', "invalid_json", None),
    ("[1, 2]", "invalid_frame", None),
    ('{"id": 4}', "invalid_frame", 4),
    ('{"op": 7, "id": 5}', "invalid_frame", 5),
    ('{"op": "ping", "id": "six"}', "invalid_frame", None),
    ('{"op": "ping", "id": -1}', "invalid_frame", None),
    ('{"op": "dance", "id": 8}', "unknown_op", 8),
    ('{"op": "publish", "id": 9, "channel": "room:a"}', "invalid_params", 9),
    ('{"op": "publish", "id": 10, "channel": 5, "data": {}}', "invalid_params", 10),
    ('{"op": "publish", "id": 11, "channel": "room:a", "data": [1]}', "invalid_params", 11),
    ('{"op": "publish", "id": 12, "channel": "room:a", "data": "text"}', "invalid_params", 12),
    ('{"op": "history", "id": 13, "channel": "room:a", "limit": 0}', "invalid_params", 13),
    ('{"op": "history", "id": 14, "channel": "room:a", "limit": 5000}', "invalid_params", 14),
    ('{"op": "subscribe", "id": 15, "channel": "nowhere"}', "invalid_channel", 15),
    (
        '{"op": "publish", "id": 16, "channel": "room:a", "data": {}, "client_msg_id": ""}',
        "invalid_params",
        16,
    ),
]


@pytest.mark.parametrize(("text", "code", "request_id"), BAD_FRAMES)
async def test_bad_frames_get_errors_and_the_connection_stays_usable(
    client: Any, text: str, code: str, request_id: int | None
) -> None:
    me = await WsClient.connect(client, token_for("me"))
    await me.send_raw(text)
    frame = await me.receive()
    assert frame["op"] == "error"
    assert frame["code"] == code, frame
    assert frame["id"] == request_id
    assert frame["message"]
    assert "ts" in await me.result("ping")


async def test_invalid_utf8_binary_and_oversized_frames(make_client: Any) -> None:
    client = await make_client(
        ws_max_frame_bytes=1024, ws_close_frame_bytes=4096, max_message_bytes=512
    )
    me = await WsClient.connect(client, token_for("me"))
    await me.ws.send_bytes(b"\x00\x01")
    assert (await me.receive())["code"] == "binary_not_supported"
    await me.ws.send_str('{"op":"ping","id":1,"pad":"' + "x" * 2000 + '"}')
    assert (await me.receive())["code"] == "frame_too_large"
    big = {"text": "y" * 600}
    frame = await me.call("publish", channel="room:a", data=big)
    assert frame["code"] == "message_too_large"
    # Invalid UTF-8 inside a text frame (aiohttp's client lets us send raw bytes as text).
    await me.ws._writer.send_frame(b'{"op":"ping","id":2,"x":"\xff"}', aiohttp.WSMsgType.TEXT)
    assert (await me.receive())["code"] == "invalid_json"
    await me.ws._writer.send_frame(
        b'{"op":"publish","id":3,"channel":"room:a","data":{"t":"\xfe"}}', aiohttp.WSMsgType.TEXT
    )
    error = await me.receive()
    assert (error["code"], error["id"]) == ("invalid_json", 3)
    assert "ts" in await me.result("ping")
    # Past the hard limit the socket closes with 1009: those bytes are never buffered.
    await me.ws.send_str("z" * 5000)
    closing = await me.ws.receive(timeout=10)
    assert closing.type is aiohttp.WSMsgType.CLOSE
    assert closing.data == 1009


async def test_bad_client_does_not_disturb_a_bystander(client: Any) -> None:
    bystander = await WsClient.connect(client, token_for("calm"))
    await bystander.result("subscribe", channel="room:shared")
    vandal = await WsClient.connect(client, token_for("vandal"))
    for text, _code, _id in BAD_FRAMES:
        await vandal.send_raw(text)
    await vandal.ws.send_bytes(b"\xff" * 100)
    publisher = await WsClient.connect(client, token_for("talker"))
    for n in range(20):
        await publisher.result("publish", channel="room:shared", data={"n": n})
    got = [(await bystander.next_event())["data"]["n"] for _ in range(20)]
    assert got == list(range(20))


async def test_subscription_cap(make_client: Any) -> None:
    client = await make_client(max_subscriptions=2)
    me = await WsClient.connect(client, token_for("me"))
    await me.result("subscribe", channel="room:1")
    await me.result("subscribe", channel="room:2")
    await me.result("subscribe", channel="room:2")  # already held: not counted twice
    frame = await me.call("subscribe", channel="room:3")
    assert frame["code"] == "too_many_subscriptions"
    await me.result("unsubscribe", channel="room:1")
    await me.result("subscribe", channel="room:3")


async def test_replies_come_in_request_order(client: Any) -> None:
    me = await WsClient.connect(client, token_for("me"))
    ids = [
        await me.send({"op": "publish", "channel": "room:o", "data": {"n": n}}) for n in range(30)
    ]
    replies = []
    while len(replies) < 30:
        frame = await me.receive()
        if frame["op"] == "reply":
            replies.append(frame)
    assert [r["id"] for r in replies] == ids
    assert [r["result"]["offset"] for r in replies] == list(range(1, 31))


async def test_shutdown_tells_clients_to_reconnect(aiohttp_server: Any, settings: Any) -> None:
    from gateway.app import create_app

    server = await aiohttp_server(create_app(settings))
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.make_url("/ws?token=" + token_for("me")))
        closer = asyncio.create_task(server.close())
        message = await ws.receive(timeout=10)
        assert message.type is aiohttp.WSMsgType.CLOSE
        assert message.data == 4000
        hint = orjson.loads(message.extra)
        assert 500 <= hint["retry_ms"] <= 5000
        await ws.close()
        await closer
