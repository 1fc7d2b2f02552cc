from __future__ import annotations

from typing import Any

from tests.support.clients import WsClient, bearer, register


async def test_publish_reaches_subscriber(client: Any) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    a = await WsClient.connect(client, alice["access_token"])
    b = await WsClient.connect(client, bob["access_token"])
    sub = await b.result("subscribe", channel="room:lobby")
    assert sub == {"channel": "room:lobby", "offset": 0, "epoch": ""}
    reply = await a.result("publish", channel="room:lobby", data={"text": "hi"})
    assert reply["offset"] == 1
    event = await b.next_event()
    assert event["op"] == "event"
    assert event["data"] == {"text": "hi"}
    assert event["from"] == alice["user_id"]
    async with client.get("/v1/channels/room:lobby/messages", headers=bearer(bob)) as r:
        body = await r.json()
        assert r.status == 200, body
        assert [m["data"] for m in body["messages"]] == [{"text": "hi"}]
    await a.close()
    await b.close()
