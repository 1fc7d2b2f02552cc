"""Two regions on loopback, each its own Redis, gateway process and SQLite store, linked through
a proxy adding 80 ms one way: one conversation across regions stays ordered, gap-free and
recoverable, and survives a cut link (docs/regions.md). Correctness only: no durations."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.clients import WsClient, bearer, register
from tests.support.regions import Regions, running_regions

READY = 60.0
"""Seconds a link may take to come back after a cut (its backoff is at most 5 s)."""


@pytest.fixture
async def regions(tmp_path: Path) -> AsyncIterator[Regions]:
    async with running_regions(tmp_path, ["kh", "au"]) as started:
        yield started


def region_of(user_id: str) -> str:
    return user_id.rpartition("_")[2]


async def connect(
    http: aiohttp.ClientSession, regions: Regions, name: str, account: dict[str, Any]
) -> WsClient:
    return await WsClient.connect(http, account["access_token"], url=regions[name].ws_url)


async def publish_until_taken(
    conn: WsClient, channel: str, data: dict[str, Any], client_msg_id: str
) -> dict[str, Any]:
    """Publish, retrying ``unavailable`` with the same client_msg_id (what an app does)."""
    async with asyncio.timeout(READY):
        while True:
            frame = await conn.call(
                "publish", channel=channel, data=data, client_msg_id=client_msg_id
            )
            if frame["op"] == "reply":
                return frame["result"]  # type: ignore[no-any-return]
            assert frame["code"] == "unavailable", frame
            assert frame["retryable"] is True
            await asyncio.sleep(0.2)


async def events_until(conn: WsClient, last: int) -> list[dict[str, Any]]:
    """Events until offset ``last`` is in (assertions look at every one of them)."""
    got: list[dict[str, Any]] = []
    while not got or got[-1]["offset"] < last:
        got.append(await conn.next_event(timeout=READY))
    return got


async def no_more_events(conn: WsClient) -> None:
    with pytest.raises(TimeoutError):
        await conn.next_event(timeout=0.5)


async def dm_pair(
    http: aiohttp.ClientSession, regions: Regions
) -> tuple[dict[str, Any], dict[str, Any], str]:
    alice = await register(http, "alice", base=regions["kh"].node.base_url)
    bob = await register(http, "bob", base=regions["au"].node.base_url)
    assert (region_of(alice["user_id"]), region_of(bob["user_id"])) == ("kh", "au")
    dm = "dm:" + ":".join(sorted([alice["user_id"], bob["user_id"]]))
    return alice, bob, dm


async def test_a_dm_across_regions_is_one_ordered_gap_free_channel(
    regions: Regions, http: aiohttp.ClientSession
) -> None:
    alice, bob, dm = await dm_pair(http, regions)
    on_kh = await connect(http, regions, "kh", alice)
    on_au = await connect(http, regions, "au", bob)
    first_kh = await on_kh.result("subscribe", channel=dm)
    first_au = await on_au.result("subscribe", channel=dm)
    assert first_kh["offset"] == first_au["offset"] == 0
    acks = []
    for n in range(20):
        sender = on_kh if n % 2 == 0 else on_au
        acks.append(
            await sender.result("publish", channel=dm, data={"n": n}, client_msg_id=f"m{n}")
        )
    # One order for the channel, assigned at its home: the acks of both sides interleave.
    assert [ack["offset"] for ack in acks] == list(range(1, 21))
    assert len({ack["epoch"] for ack in acks}) == 1
    for conn in (on_kh, on_au):
        events = await events_until(conn, 20)
        assert [e["offset"] for e in events] == list(range(1, 21))
        assert [e["data"] for e in events] == [{"n": n} for n in range(20)]
        assert [e["message_id"] for e in events] == [ack["message_id"] for ack in acks]
        await no_more_events(conn)
    # A retry of an acknowledged message (same client_msg_id) is not stored twice, wherever sent.
    again = await on_au.result("publish", channel=dm, data={"n": 1}, client_msg_id="m1")
    assert (again["duplicate"], again["offset"]) == (True, 2)
    # History in the other region is the home's, from the local copy.
    pages = []
    for name, account in (("kh", alice), ("au", bob)):
        async with http.get(
            f"{regions[name].node.base_url}/v1/channels/{dm}/messages?limit=50",
            headers=bearer(account),
        ) as response:
            assert response.status == 200
            pages.append((await response.json())["messages"])
    assert pages[0] == pages[1]
    assert [m["offset"] for m in pages[0]] == list(range(20, 0, -1))
    # Each region's node counts what crossed (docs/regions.md, "Metrics").
    home = region_of(min(alice["user_id"], bob["user_id"]))
    away = "au" if home == "kh" else "kh"
    async with http.get(regions[away].node.base_url + "/metrics") as response:
        found = {
            sample.name: sample.value
            for family in text_string_to_metric_families(await response.text())
            for sample in family.samples
        }
    assert found["moosic_region_publishes_forwarded_total"] == 11  # 10 and the retry
    assert found["moosic_region_events_relayed_total"] == 20
    assert found["moosic_region_follows_total"] == 1
    assert found["moosic_region_channels_followed"] == 1
    assert found["moosic_region_link_connects_total"] == 1
    assert found["moosic_region_forwards_failed_total"] == 0
    assert found["moosic_region_follows_refused_total"] == 0
    assert "moosic_region_link_failures_total" in found


async def test_since_recovery_in_the_region_that_is_not_home(
    regions: Regions, http: aiohttp.ClientSession
) -> None:
    alice, bob, dm = await dm_pair(http, regions)
    home = region_of(min(alice["user_id"], bob["user_id"]))
    away = "au" if home == "kh" else "kh"
    at_home, abroad = (alice, bob) if home == "kh" else (bob, alice)
    writer = await connect(http, regions, home, at_home)
    reader = await connect(http, regions, away, abroad)
    joined = await reader.result("subscribe", channel=dm)
    for n in range(3):
        await writer.result("publish", channel=dm, data={"n": n})
    seen = await events_until(reader, 3)
    await reader.close()
    for n in range(3, 8):
        await writer.result("publish", channel=dm, data={"n": n})
    back = await connect(http, regions, away, abroad)
    result = await back.result(
        "subscribe", channel=dm, since={"offset": seen[-1]["offset"], "epoch": joined["epoch"]}
    )
    assert (result["recovered"], result["missed"], result["offset"]) == (True, 5, 8)
    replayed = await events_until(back, 8)
    assert [e["data"]["n"] for e in replayed] == [3, 4, 5, 6, 7]
    await no_more_events(back)


async def test_a_cut_link_loses_and_doubles_nothing(
    regions: Regions, http: aiohttp.ClientSession
) -> None:
    alice, bob, dm = await dm_pair(http, regions)
    home = region_of(min(alice["user_id"], bob["user_id"]))
    away = "au" if home == "kh" else "kh"
    at_home, abroad = (alice, bob) if home == "kh" else (bob, alice)
    writer = await connect(http, regions, home, at_home)
    far = await connect(http, regions, away, abroad)
    near = await connect(http, regions, home, at_home)
    await far.result("subscribe", channel=dm)
    await near.result("subscribe", channel=dm)
    acked: list[dict[str, Any]] = []
    for n in range(5):
        acked.append(
            await writer.result("publish", channel=dm, data={"n": n}, client_msg_id=f"h{n}")
        )
        acked.append(
            await far.result(
                "publish", channel=dm, data={"n": n, "far": True}, client_msg_id=f"f{n}"
            )
        )

    await regions.cut()
    await asyncio.sleep(3)  # a few seconds cut: the relay abroad retries meanwhile
    # The home region goes on; abroad, a publish to the remote-home channel is refused, retryable.
    for n in range(5, 10):
        acked.append(
            await writer.result("publish", channel=dm, data={"n": n}, client_msg_id=f"h{n}")
        )
    refused = await far.call("publish", channel=dm, data={"lost": True}, client_msg_id="refused")
    assert (refused["op"], refused["code"], refused["retryable"]) == ("error", "unavailable", True)
    # Channels homed in the region that lost its link keep working there.
    local_room = f"room:{away}.lobby"
    listener = await connect(http, regions, away, abroad)
    await listener.result("subscribe", channel=local_room)
    local = await far.result("publish", channel=local_room, data={"local": True})
    assert local["offset"] == 1
    assert (await listener.next_event())["data"] == {"local": True}
    # History abroad: the node there no longer follows the DM live (its link is down), and
    # the home cannot be asked: the local copy answers with what it has.
    async with http.get(
        f"{regions[away].node.base_url}/v1/channels/{dm}/messages", headers=bearer(abroad)
    ) as response:
        assert response.status == 200
        copied = [m["message_id"] for m in (await response.json())["messages"]]
    assert 1 <= len(copied) <= 10
    assert copied == [a["message_id"] for a in reversed(acked[: len(copied)])]
    # Recovery abroad works from the local copy while the link is down: a gap-free prefix of
    # what was acknowledged (what crossed before the cut).
    late = await connect(http, regions, away, abroad)
    copy = await late.result("subscribe", channel=dm, since={"offset": 0, "epoch": ""})
    assert copy["recovered"] is True
    assert 1 <= copy["missed"] == copy["offset"] <= 10
    replayed = [await late.next_event() for _ in range(copy["missed"])]
    assert [e["message_id"] for e in replayed] == [a["message_id"] for a in acked[: copy["missed"]]]
    await late.close()

    await regions.restore()
    # Abroad, publishing works again once the link is back (the same client_msg_id: one copy).
    acked.append(await publish_until_taken(far, dm, {"n": 10, "far": True}, "f10"))
    for n in range(11, 14):
        acked.append(
            await writer.result("publish", channel=dm, data={"n": n}, client_msg_id=f"h{n}")
        )
    offsets = [ack["offset"] for ack in acked]
    assert offsets == list(range(1, len(acked) + 1))
    for conn in (far, near):
        events = await events_until(conn, offsets[-1])
        assert [e["offset"] for e in events] == offsets
        assert [e["message_id"] for e in events] == [ack["message_id"] for ack in acked]
        await no_more_events(conn)


async def test_a_first_subscriber_abroad_starts_at_the_homes_position(
    regions: Regions, http: aiohttp.ClientSession
) -> None:
    alice, bob, dm = await dm_pair(http, regions)
    home = region_of(min(alice["user_id"], bob["user_id"]))
    away = "au" if home == "kh" else "kh"
    at_home, abroad = (alice, bob) if home == "kh" else (bob, alice)
    writer = await connect(http, regions, home, at_home)
    for n in range(3):
        await writer.result("publish", channel=dm, data={"n": n})
    # The node abroad has never followed anything: its link to the home opens now.
    reader = await connect(http, regions, away, abroad)
    joined = await reader.result("subscribe", channel=dm)
    assert joined["offset"] == 3
    await writer.result("publish", channel=dm, data={"n": 3})
    event = await reader.next_event()
    assert (event["offset"], event["data"]) == (4, {"n": 3})
    await no_more_events(reader)
    # Its history is there too, copied from the home on the first follow.
    async with http.get(
        f"{regions[away].node.base_url}/v1/channels/{dm}/messages", headers=bearer(abroad)
    ) as response:
        assert [m["offset"] for m in (await response.json())["messages"]] == [4, 3, 2, 1]


async def test_two_nodes_abroad_relay_without_doubles(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Both nodes of the region abroad follow the channel, write one copy and publish into one
    regional Redis: each socket still gets every event once, in order, across a cut."""
    async with running_regions(tmp_path, ["kh", "au"], nodes={"kh": 2, "au": 2}) as regions:
        alice, bob, dm = await dm_pair(http, regions)
        home = region_of(min(alice["user_id"], bob["user_id"]))
        away = "au" if home == "kh" else "kh"
        at_home, abroad = (alice, bob) if home == "kh" else (bob, alice)
        writer = await connect(http, regions, home, at_home)
        readers = [
            await WsClient.connect(http, abroad["access_token"], url=node.base_url + "/ws")
            for node in regions[away].nodes
        ]
        for reader in readers:
            await reader.result("subscribe", channel=dm)
        acked = []
        for n in range(10):
            acked.append(
                await writer.result("publish", channel=dm, data={"n": n}, client_msg_id=f"h{n}")
            )
            sender = readers[n % 2]
            acked.append(
                await sender.result("publish", channel=dm, data={"n": n}, client_msg_id=f"a{n}")
            )
        await regions.cut()
        await asyncio.sleep(3)
        for n in range(10, 15):
            acked.append(
                await writer.result("publish", channel=dm, data={"n": n}, client_msg_id=f"h{n}")
            )
        await regions.restore()
        acked.append(await publish_until_taken(readers[1], dm, {"n": 15}, "a15"))
        offsets = [ack["offset"] for ack in acked]
        assert offsets == list(range(1, 27))
        for reader in readers:
            events = await events_until(reader, 26)
            assert [e["offset"] for e in events] == offsets
            assert [e["message_id"] for e in events] == [ack["message_id"] for ack in acked]
            await no_more_events(reader)


async def test_a_traveller_uses_their_token_in_the_other_region(
    regions: Regions, http: aiohttp.ClientSession
) -> None:
    """Tokens are valid in every region without a store lookup: Alice (signed up in kh) opens
    a socket in au, where the store has no account of hers, and chats in her DM from there."""
    alice, bob, dm = await dm_pair(http, regions)
    travelling = await connect(http, regions, "au", alice)
    at_home = await connect(http, regions, "kh", alice)
    bob_ws = await connect(http, regions, "au", bob)
    for conn in (travelling, at_home, bob_ws):
        await conn.result("subscribe", channel=dm)
    sent = await travelling.result("publish", channel=dm, data={"from": "abroad"})
    answer = await bob_ws.result("publish", channel=dm, data={"from": "bob"})
    assert (sent["offset"], answer["offset"]) == (1, 2)
    for conn in (travelling, at_home, bob_ws):
        events = await events_until(conn, 2)
        assert [e["data"] for e in events] == [{"from": "abroad"}, {"from": "bob"}]
        assert [e["from"] for e in events] == [alice["user_id"], bob["user_id"]]
        await no_more_events(conn)


async def test_history_abroad_comes_from_the_home_until_followed(
    regions: Regions, http: aiohttp.ClientSession
) -> None:
    """A region that has never followed the channel has no copy of it: its history is the
    home's; once a subscriber there follows it live, the copy answers (the same pages)."""
    alice, bob, dm = await dm_pair(http, regions)
    home = region_of(min(alice["user_id"], bob["user_id"]))
    away = "au" if home == "kh" else "kh"
    at_home, abroad = (alice, bob) if home == "kh" else (bob, alice)
    writer = await connect(http, regions, home, at_home)
    acked = [await writer.result("publish", channel=dm, data={"n": n}) for n in range(5)]
    url = f"{regions[away].node.base_url}/v1/channels/{dm}/messages?limit=3"

    async def page(before: str | None = None) -> list[str]:
        async with http.get(
            url + (f"&before={before}" if before else ""), headers=bearer(abroad)
        ) as response:
            assert response.status == 200
            return [m["message_id"] for m in (await response.json())["messages"]]

    ids = [a["message_id"] for a in reversed(acked)]
    assert await page() == ids[:3]
    assert await page(ids[2]) == ids[3:]
    reader = await connect(http, regions, away, abroad)
    await reader.result("subscribe", channel=dm)
    assert await page() == ids[:3]
    assert await page(ids[2]) == ids[3:]


async def test_a_dead_region_leaves_the_others_their_local_channels(
    regions: Regions, http: aiohttp.ClientSession
) -> None:
    """The whole home region is killed (its gateway and its Redis): abroad, channels homed
    there refuse publishes (unavailable) and keep their copy; channels homed abroad go on."""
    alice, bob, dm = await dm_pair(http, regions)
    home = region_of(min(alice["user_id"], bob["user_id"]))
    away = "au" if home == "kh" else "kh"
    at_home, abroad = (alice, bob) if home == "kh" else (bob, alice)
    writer = await connect(http, regions, home, at_home)
    reader = await connect(http, regions, away, abroad)
    await reader.result("subscribe", channel=dm)
    acked = [await writer.result("publish", channel=dm, data={"n": n}) for n in range(3)]
    assert [e["offset"] for e in await events_until(reader, 3)] == [1, 2, 3]
    for node in regions[home].nodes:
        await asyncio.to_thread(node.stop, signal.SIGKILL)
    regions[home].redis.stop()
    refused = await reader.call("publish", channel=dm, data={"n": 3})
    assert (refused["op"], refused["code"]) == ("error", "unavailable")
    # A second user abroad, in a room homed there: unaffected.
    carol = await register(http, "carol", base=regions[away].node.base_url)
    room = f"room:{away}.still-here"
    listener = await connect(http, regions, away, carol)
    await listener.result("subscribe", channel=room)
    for n in range(3):
        sent = await reader.result("publish", channel=room, data={"n": n})
        assert sent["offset"] == n + 1
    assert [e["data"]["n"] for e in await events_until(listener, 3)] == [0, 1, 2]
    # The DM's history abroad is its copy: everything that crossed before the region died.
    async with http.get(
        f"{regions[away].node.base_url}/v1/channels/{dm}/messages", headers=bearer(abroad)
    ) as response:
        assert response.status == 200
        copied = [m["message_id"] for m in (await response.json())["messages"]]
    assert copied == [a["message_id"] for a in reversed(acked)]


# -- ephemeral pushes across regions ------------------------------------------------------------

QUIET = 1.0
"""Seconds a socket must stay quiet after a push for the push to count as delivered once: an
echo would come back within two link trips (160 ms here)."""


async def next_push_about(conn: WsClient, op: str, user: str, timeout: float) -> dict[str, Any]:
    """The next ``op`` push about ``user``; every other frame stays queued (events included)."""
    for frame in list(conn.pushes):
        if frame.get("op") == op and frame.get("user") == user:
            conn.pushes.remove(frame)
            return frame
    async with asyncio.timeout(timeout):
        while True:
            frame = await conn.receive(timeout)
            if frame.get("op") == op and frame.get("user") == user:
                return frame
            conn.pushes.append(frame)


async def pushes_of(conn: WsClient, op: str, user: str) -> list[dict[str, Any]]:
    """The ``op`` pushes about ``user`` the socket got: waits for the first, then until quiet."""
    got = [await next_push_about(conn, op, user, READY)]
    while True:
        try:
            got.append(await next_push_about(conn, op, user, QUIET))
        except TimeoutError:
            return got


async def each_once(conns: Iterable[WsClient], op: str, user: str) -> list[dict[str, Any]]:
    """The one ``op`` push about ``user`` each socket got (asserted: exactly one each)."""
    found = await asyncio.gather(*(pushes_of(conn, op, user) for conn in conns))
    assert all(len(pushes) == 1 for pushes in found), found
    return [pushes[0] for pushes in found]


async def region_metrics(
    http: aiohttp.ClientSession, regions: Regions, name: str
) -> dict[str, float]:
    """The region metrics of the region's first node, by name after ``moosic_region_``."""
    async with http.get(f"{regions[name].node.base_url}/metrics") as response:
        text = await response.text()
    return {
        family.name.removeprefix("moosic_region_"): family.samples[0].value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("moosic_region_")
    }


async def test_typing_and_read_receipts_cross_both_ways_once(
    regions: Regions, http: aiohttp.ClientSession
) -> None:
    """A typing push and a read receipt made abroad reach the home region's member, those made
    at home reach the member abroad; every subscriber in both regions gets each once."""
    alice, bob, dm = await dm_pair(http, regions)
    home = region_of(min(alice["user_id"], bob["user_id"]))
    away = "au" if home == "kh" else "kh"
    at_home, abroad = (alice, bob) if home == "kh" else (bob, alice)
    near = await connect(http, regions, home, at_home)
    far = await connect(http, regions, away, abroad)
    far_peer = await connect(http, regions, away, at_home)  # the home user's device abroad
    everyone = (near, far, far_peer)
    for conn in everyone:
        await conn.result("subscribe", channel=dm)

    assert (await far.result("typing", channel=dm))["sent"] is True
    for typing in await each_once(everyone, "typing", abroad["user_id"]):
        assert typing == {"op": "typing", "channel": dm, "user": abroad["user_id"]}
    assert (await near.result("typing", channel=dm))["sent"] is True
    for typing in await each_once(everyone, "typing", at_home["user_id"]):
        assert typing["channel"] == dm

    sent = await near.result("publish", channel=dm, data={"n": 1})
    assert sent["offset"] == 1
    for conn in everyone:
        assert (await conn.next_event(timeout=READY))["offset"] == 1
    assert (await far.result("read", channel=dm, offset=1))["last_read"] == 1
    for read in await each_once(everyone, "read", abroad["user_id"]):
        assert read == {"op": "read", "channel": dm, "user": abroad["user_id"], "offset": 1}
    # (The home user's own message was read by sending it: they read the answer.)
    assert (await far.result("publish", channel=dm, data={"n": 2}))["offset"] == 2
    for conn in everyone:
        assert (await conn.next_event(timeout=READY))["offset"] == 2
    assert (await near.result("read", channel=dm, offset=2))["last_read"] == 2
    for read in await each_once(everyone, "read", at_home["user_id"]):
        assert (read["channel"], read["offset"]) == (dm, 2)
    for conn in everyone:
        await no_more_events(conn)
    # At least a typing push and a receipt crossed each way (join pushes may have too).
    for name in (home, away):
        counts = await region_metrics(http, regions, name)
        assert counts["pushes_sent"] >= 2, name
        assert counts["pushes_received"] >= 2, name
        assert counts["pushes_dropped"] == 0, name


async def test_join_and_leave_cross_both_ways_once(
    regions: Regions, http: aiohttp.ClientSession
) -> None:
    alice, bob, dm = await dm_pair(http, regions)
    home = region_of(min(alice["user_id"], bob["user_id"]))
    away = "au" if home == "kh" else "kh"
    at_home, abroad = (alice, bob) if home == "kh" else (bob, alice)
    near = await connect(http, regions, home, at_home)
    far = await connect(http, regions, away, abroad)
    await near.result("subscribe", channel=dm)
    # Abroad -> home: the user abroad's first subscription in their region, their last one
    # ending (the node there stops following the DM), and a new first one.
    await far.result("subscribe", channel=dm)
    [join] = await each_once([near], "join", abroad["user_id"])
    assert join == {"op": "join", "channel": dm, "user": abroad["user_id"]}
    await far.result("unsubscribe", channel=dm)
    [leave] = await each_once([near], "leave", abroad["user_id"])
    assert leave == {"op": "leave", "channel": dm, "user": abroad["user_id"]}
    await far.result("subscribe", channel=dm)
    [join] = await each_once([near], "join", abroad["user_id"])
    assert join["channel"] == dm
    # Home -> abroad: the home user leaves and comes back.
    await near.result("unsubscribe", channel=dm)
    [leave] = await each_once([far], "leave", at_home["user_id"])
    assert leave == {"op": "leave", "channel": dm, "user": at_home["user_id"]}
    await near.result("subscribe", channel=dm)
    [join] = await each_once([far], "join", at_home["user_id"])
    assert join["channel"] == dm


async def test_pushes_cross_again_after_a_cut_and_events_stay_exactly_once(
    regions: Regions, http: aiohttp.ClientSession
) -> None:
    """While the link is cut a push made abroad stays in its region (best-effort: dropped, not
    sent late); once the link is back pushes cross again, and every acknowledged message
    reaches each socket once, in order."""
    alice, bob, dm = await dm_pair(http, regions)
    home = region_of(min(alice["user_id"], bob["user_id"]))
    away = "au" if home == "kh" else "kh"
    at_home, abroad = (alice, bob) if home == "kh" else (bob, alice)
    near = await connect(http, regions, home, at_home)
    far = await connect(http, regions, away, abroad)
    far_peer = await connect(http, regions, away, at_home)
    everyone = (near, far, far_peer)
    for conn in everyone:
        await conn.result("subscribe", channel=dm)
    acked = [await near.result("publish", channel=dm, data={"n": 0}, client_msg_id="h0")]
    failures = (await region_metrics(http, regions, away))["link_failures"]
    await regions.cut()
    async with asyncio.timeout(READY):  # the relay abroad saw the link go (a reconnect failed)
        while (await region_metrics(http, regions, away))["link_failures"] == failures:
            await asyncio.sleep(0.1)
    assert (await far.result("typing", channel=dm))["sent"] is True
    await each_once([far, far_peer], "typing", abroad["user_id"])  # its region still has it
    assert (await region_metrics(http, regions, away))["pushes_dropped"] == 1
    acked.append(await near.result("publish", channel=dm, data={"n": 1}, client_msg_id="h1"))
    await asyncio.sleep(3)
    await regions.restore()
    acked.append(await publish_until_taken(far, dm, {"n": 2}, "f2"))
    delivered = {conn: await events_until(conn, 3) for conn in everyone}  # the link is back
    with pytest.raises(TimeoutError):
        await next_push_about(near, "typing", abroad["user_id"], QUIET)  # never sent late
    assert (await far_peer.result("typing", channel=dm))["sent"] is True
    await each_once(everyone, "typing", at_home["user_id"])
    for conn, events in delivered.items():
        assert [e["message_id"] for e in events] == [a["message_id"] for a in acked]
        await no_more_events(conn)


async def test_pushes_with_two_nodes_per_region_reach_each_socket_once(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Every node with subscribers follows the channel over its own link: a push from the home
    is handed to that node's sockets only, so no socket gets it twice, whichever node made it."""
    async with running_regions(tmp_path, ["kh", "au"], nodes={"kh": 2, "au": 2}) as regions:
        alice, bob, dm = await dm_pair(http, regions)
        by_node = []
        for name in ("kh", "au"):
            for node in regions[name].nodes:
                url = node.base_url + "/ws"
                by_node.append(
                    [
                        await WsClient.connect(http, account["access_token"], url=url)
                        for account in (alice, bob)
                    ]
                )
        everyone = [conn for pair in by_node for conn in pair]
        for conn in everyone:
            await conn.result("subscribe", channel=dm)
        # Alice types from each node in turn (the typing throttle is per node).
        for alice_ws, _bob_ws in by_node:
            assert (await alice_ws.result("typing", channel=dm))["sent"] is True
            for typing in await each_once(everyone, "typing", alice["user_id"]):
                assert typing["channel"] == dm
