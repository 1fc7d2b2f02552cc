"""The hub's per-channel ordering: duplicates dropped, gaps held, filled, or skipped."""

from __future__ import annotations

import asyncio

from gateway.fanout.broker_memory import MemoryBroker, RecentWindows
from gateway.fanout.hub import Hub
from gateway.metrics import Metrics


class Inbox:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def deliver(self, frame: bytes) -> None:
        self.frames.append(frame)

    def payloads(self) -> list[bytes]:
        return [f[2:] for f in self.frames]  # small frames: 2-byte header


async def started_hub(
    backfill_events: dict[int, bytes] | None = None,
) -> tuple[Hub, MemoryBroker, Metrics]:
    metrics = Metrics()
    broker = MemoryBroker()
    calls: list[int] = []

    async def backfill(
        channel: str, since: int, limit: int, *, outage: bool = False
    ) -> tuple[str, list[tuple[int, bytes]]]:
        calls.append(since)
        found = sorted((o, p) for o, p in (backfill_events or {}).items() if o > since)
        return "e1", found[:limit]

    hub = Hub(broker, metrics, max_watchers=10, heartbeat=30.0, backfill=backfill)
    await hub.start()
    return hub, broker, metrics


async def test_out_of_order_events_are_delivered_in_order_and_duplicates_dropped() -> None:
    hub, broker, metrics = await started_hub()
    inbox = Inbox()
    await hub.subscribe("room:a", inbox)
    for offset in (1, 3, 2, 2, 4, 1):
        await broker.publish("room:a", b"e%d" % offset, offset, "e1")
    assert inbox.payloads() == [b"e1", b"e2", b"e3", b"e4"]
    assert metrics.duplicates_dropped == 2
    await hub.close()


async def test_a_gap_is_filled_from_the_backfill() -> None:
    hub, broker, metrics = await started_hub({2: b"e2", 3: b"e3"})
    inbox = Inbox()
    await hub.subscribe("room:a", inbox)
    await broker.publish("room:a", b"e1", 1, "e1")
    await broker.publish("room:a", b"e4", 4, "e1")  # 2 and 3 never come by pub/sub
    async with asyncio.timeout(5):
        while len(inbox.frames) < 4:
            await asyncio.sleep(0.01)
    assert inbox.payloads() == [b"e1", b"e2", b"e3", b"e4"]
    assert metrics.gap_events_filled == 2
    await hub.close()


async def test_held_events_that_a_fill_delivered_are_not_delivered_again() -> None:
    hub, broker, _metrics = await started_hub({2: b"e2", 3: b"e3", 4: b"e4"})
    inbox = Inbox()
    await hub.subscribe("room:a", inbox)
    await broker.publish("room:a", b"e1", 1, "e1")
    await broker.publish("room:a", b"e4", 4, "e1")  # held; the fill brings 2, 3 and 4
    async with asyncio.timeout(5):
        while len(inbox.frames) < 4:
            await asyncio.sleep(0.01)
    await broker.publish("room:a", b"e5", 5, "e1")
    assert inbox.payloads() == [b"e1", b"e2", b"e3", b"e4", b"e5"]
    await hub.close()


async def test_an_unfillable_gap_is_skipped_after_trying() -> None:
    hub, broker, metrics = await started_hub({})
    inbox = Inbox()
    await hub.subscribe("room:a", inbox)
    await broker.publish("room:a", b"e1", 1, "e1")
    await broker.publish("room:a", b"e5", 5, "e1")
    async with asyncio.timeout(5):
        while len(inbox.frames) < 2:
            await asyncio.sleep(0.01)
    assert inbox.payloads() == [b"e1", b"e5"]
    assert metrics.gap_events_skipped == 3
    await broker.publish("room:a", b"e6", 6, "e1")
    assert inbox.payloads()[-1] == b"e6"
    await hub.close()


async def test_a_new_epoch_starts_over() -> None:
    hub, broker, _metrics = await started_hub()
    inbox = Inbox()
    await hub.subscribe("room:a", inbox)
    await broker.publish("room:a", b"old", 7, "e1")
    await broker.publish("room:a", b"new", 1, "e2")
    assert inbox.payloads() == [b"old", b"new"]
    await hub.close()


def test_recent_windows_are_bounded_sorted_and_per_epoch() -> None:
    windows = RecentWindows(per_channel=3, channels=2)
    for offset in (2, 1, 4, 3):
        windows.add("a", offset, "e1", b"p%d" % offset)
    recent = windows.get("a", 0, 10)
    assert recent is not None
    assert (recent.first, recent.last) == (2, 4)
    assert recent.events == [(2, b"p2"), (3, b"p3"), (4, b"p4")]
    assert not recent.covers(0)
    assert recent.covers(1)
    assert recent.covers(9)
    windows.add("a", 1, "e2", b"fresh")  # history reset: the old window goes
    fresh = windows.get("a", 0, 10)
    assert fresh is not None
    assert (fresh.epoch, fresh.events) == ("e2", [(1, b"fresh")])
    windows.add("b", 1, "e", b"x")
    windows.add("c", 1, "e", b"y")  # a third channel: the least recent ("a") is forgotten
    assert windows.get("a", 0, 10) is None


class Member(Inbox):
    user_id = "m"

    def lagged(self) -> None:
        raise AssertionError("not expected")


async def test_a_channels_first_events_are_put_in_order_too() -> None:
    """Two first messages of a new channel arriving swapped: neither is taken as a repeat."""
    hub, broker, metrics = await started_hub()
    member = Member()
    await hub.subscribe("room:new", member, pending=True)  # type: ignore[arg-type]
    hub.activate("room:new", member, 0, "")  # type: ignore[arg-type]
    await broker.publish("room:new", b"e2", 2, "e1")
    await broker.publish("room:new", b"e1", 1, "e1")
    assert member.payloads() == [b"e1", b"e2"]
    assert metrics.duplicates_dropped == 0
    await hub.close()


async def test_live_held_and_fetched_events_are_each_observed_once_in_the_lag() -> None:
    stored = 1_700_000_000_000  # ms: long ago, so every observation is in the top bucket
    fetched = b'{"op":"event","ts":%d}' % stored
    hub, broker, metrics = await started_hub({2: fetched})
    lag = metrics.histogram("delivery_lag")
    first, second = Inbox(), Inbox()
    await hub.subscribe("room:a", first)
    await hub.subscribe("room:a", second)
    await broker.publish("room:a", b"e1", 1, "e1", stored)  # live
    await broker.publish("room:a", b"e3", 3, "e1", stored)  # held until 2 is fetched
    await broker.publish("room:a", b"typing", 0, "", 0)  # ephemeral: no store time
    async with asyncio.timeout(5):
        while len(first.frames) < 4:
            await asyncio.sleep(0.01)
    assert first.payloads() == [b"e1", b"typing", fetched, b"e3"]
    assert lag.count == 3  # once per event, not once per subscriber
    assert lag.counts[-1] == 3  # stored long ago: above every bound
    await broker.publish("room:a", b"e4", 4, "e1")  # no store time (an older node's): skipped
    assert lag.count == 3
    await hub.close()


class Tap:
    def __init__(self) -> None:
        self.pushes: list[tuple[bytes, str]] = []

    def push(self, payload: bytes, origin: str) -> None:
        self.pushes.append((payload, origin))


async def test_a_tap_gets_the_ephemeral_pushes_with_their_origin_and_not_stored_events() -> None:
    """A region link's home side taps a channel: pushes made here have origin "", those a
    region link brought carry its region; a push handed over by a relay reaches only this
    node's subscribers (the broker never sees it)."""
    hub, broker, _metrics = await started_hub()
    inbox, tap = Inbox(), Tap()
    await hub.subscribe("dm:a:b", inbox)
    hub.tap("dm:a:b", tap)
    await hub.publish("dm:a:b", b"stored", 1, "e1")
    await hub.publish("dm:a:b", b"typing-here")
    await hub.publish("dm:a:b", b"typing-abroad", 0, "au")
    sent: list[bytes] = []
    broker.publish = lambda *args, **kwargs: sent.append(args[1])  # type: ignore[method-assign,assignment,return-value]
    hub.deliver_push("dm:a:b", b"relayed", "kh")
    assert sent == []
    assert inbox.payloads() == [b"stored", b"typing-here", b"typing-abroad", b"relayed"]
    assert tap.pushes == [(b"typing-here", ""), (b"typing-abroad", "au"), (b"relayed", "kh")]
    hub.untap("dm:a:b", tap)
    hub.deliver_push("dm:a:b", b"after", "kh")
    assert len(tap.pushes) == 3
    await hub.close()
