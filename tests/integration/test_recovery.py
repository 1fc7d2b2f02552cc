"""Reconnecting clients recover exactly what they missed, in order, then continue live."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.integration.test_slow_consumer import metric
from tests.integration.test_ws import token_for
from tests.support.clients import WsClient


async def publish_many(conn: WsClient, channel: str, numbers: range) -> list[dict[str, Any]]:
    return [await conn.result("publish", channel=channel, data={"n": n}) for n in numbers]


async def test_subscribe_since_replays_the_missed_events_then_goes_live(client: Any) -> None:
    talker = await WsClient.connect(client, token_for("talker"))
    phone = await WsClient.connect(client, token_for("phone"))
    first = await phone.result("subscribe", channel="room:r")
    assert (first["offset"], first["epoch"]) == (0, "")
    await publish_many(talker, "room:r", range(3))
    seen = [await phone.next_event() for _ in range(3)]
    last = seen[-1]["offset"]
    await phone.close()  # the phone drops off the network
    replies = await publish_many(talker, "room:r", range(3, 8))
    epoch = replies[-1]["epoch"]

    phone = await WsClient.connect(client, token_for("phone"))
    back = await phone.result("subscribe", channel="room:r", since={"offset": last, "epoch": epoch})
    assert back == {
        "channel": "room:r",
        "offset": 8,
        "epoch": epoch,
        "recovered": True,
        "missed": 5,
    }
    replayed = [await phone.next_event() for _ in range(5)]
    assert [e["data"]["n"] for e in replayed] == [3, 4, 5, 6, 7]
    assert [e["offset"] for e in replayed] == [4, 5, 6, 7, 8]
    await publish_many(talker, "room:r", range(8, 10))
    live = [await phone.next_event() for _ in range(2)]
    assert [e["offset"] for e in live] == [9, 10]
    async with client.get("/metrics") as r:
        text = await r.text()
    # The first subscribe, before any event, is no recovery; the recovery came from the window.
    assert "moosic_recoveries_from_store_total 0" in text
    assert "moosic_recoveries_from_window_total 1" in text


async def test_events_published_during_recovery_are_neither_lost_nor_doubled(client: Any) -> None:
    talker = await WsClient.connect(client, token_for("talker"))
    await publish_many(talker, "room:busy", range(20))
    flood = asyncio.create_task(publish_many(talker, "room:busy", range(20, 120)))
    phone = await WsClient.connect(client, token_for("phone"))
    back = await phone.result("subscribe", channel="room:busy", since={"offset": 10, "epoch": ""})
    assert back["recovered"] is True
    await flood
    offsets = []
    async with asyncio.timeout(20):
        while not offsets or offsets[-1] < 120:
            offsets.append((await phone.next_event())["offset"])
    assert offsets == list(range(11, 121))


async def test_recovery_refused_when_the_epoch_changed_or_too_far_behind(make_client: Any) -> None:
    client = await make_client(recovery_window=5, recovery_max_events=10)
    talker = await WsClient.connect(client, token_for("talker"))
    replies = await publish_many(talker, "room:old", range(30))
    epoch = replies[-1]["epoch"]
    phone = await WsClient.connect(client, token_for("phone"))
    other = await phone.result("subscribe", channel="room:old", since={"offset": 3, "epoch": "zzz"})
    assert (other["recovered"], other["reason"]) == (False, "epoch_changed")
    await phone.result("unsubscribe", channel="room:old")
    behind = await phone.result(
        "subscribe", channel="room:old", since={"offset": 3, "epoch": epoch}
    )
    assert (behind["recovered"], behind["reason"], behind["offset"]) == (False, "too_old", 30)
    await phone.result("unsubscribe", channel="room:old")
    # Behind the window but within the replay limit: the store fills in.
    near = await phone.result("subscribe", channel="room:old", since={"offset": 22, "epoch": epoch})
    assert (near["recovered"], near["missed"]) == (True, 8)
    assert [(await phone.next_event())["offset"] for _ in range(8)] == list(range(23, 31))
    assert await metric(client, "moosic_recoveries_from_store_total") == 3


async def test_long_poll_uses_the_recent_window(client: Any) -> None:
    talker = await WsClient.connect(client, token_for("talker"))
    await publish_many(talker, "room:lp", range(4))
    headers = {"Authorization": "Bearer " + token_for("poller")}
    async with client.get("/v1/channels/room:lp/events?since=1", headers=headers) as r:
        body = await r.json()
    assert [e["offset"] for e in body["events"]] == [2, 3, 4]
    assert body["events"][0]["op"] == "event"
    assert body["next_since"] == 4
    assert await metric(client, "moosic_recoveries_from_store_total") == 0


async def test_only_replays_that_read_the_store_count_as_recoveries_from_it(
    make_client: Any,
) -> None:
    client = await make_client(recovery_window=5, recovery_max_events=10)
    talker = await WsClient.connect(client, token_for("talker"))
    phone = await WsClient.connect(client, token_for("phone"))
    # Plain first subscribes: to a channel that never had an event, and to one whose history
    # is longer than the recent window (its position comes from the store).
    assert (await phone.result("subscribe", channel="room:empty"))["offset"] == 0
    replies = await publish_many(talker, "room:long", range(12))
    epoch = replies[-1]["epoch"]
    assert (await phone.result("subscribe", channel="room:long"))["offset"] == 12
    await phone.result("unsubscribe", channel="room:long")
    # A subscribe with `since` that missed nothing, and a long poll from now on.
    current = await phone.result(
        "subscribe", channel="room:long", since={"offset": 12, "epoch": epoch}
    )
    assert (current["recovered"], current["missed"]) == (True, 0)
    headers = {"Authorization": "Bearer " + token_for("poller")}
    async with client.get("/v1/channels/room:long/events?timeout=0", headers=headers) as r:
        assert (r.status, (await r.json())["events"]) == (200, [])
    assert await metric(client, "moosic_recoveries_from_store_total") == 0
    assert await metric(client, "moosic_recoveries_from_window_total") == 1
    # A replay from behind the window is one.
    await phone.result("unsubscribe", channel="room:long")
    behind = await phone.result(
        "subscribe", channel="room:long", since={"offset": 4, "epoch": epoch}
    )
    assert (behind["recovered"], behind["missed"]) == (True, 8)
    assert await metric(client, "moosic_recoveries_from_store_total") == 1
