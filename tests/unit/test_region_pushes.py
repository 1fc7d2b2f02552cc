"""The pushes waiting for a region link: coalesced by what they say, bounded, newest dropped."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from gateway.regions.pushes import PushQueue, PushStats
from handlers.messages import join_leave_message, receipt_message, typing_message


async def drain(queue: PushQueue) -> list[bytes]:
    got = []
    while len(queue):
        got.append((await queue.get())[1])
    return got


async def test_a_newer_push_saying_the_same_replaces_the_queued_one_in_its_place() -> None:
    stats = PushStats()
    queue = PushQueue(stats)
    queue.put("dm:a:b", typing_message("dm:a:b", "a"))
    queue.put("dm:a:b", receipt_message("dm:a:b", "a", 3))
    queue.put("dm:a:b", join_leave_message("dm:a:b", "b", up=True))
    queue.put("dm:a:b", typing_message("dm:a:b", "a"))
    queue.put("dm:a:b", receipt_message("dm:a:b", "a", 5))
    queue.put("dm:a:b", join_leave_message("dm:a:b", "b", up=False))
    queue.put("dm:a:b", typing_message("dm:a:b", "b"))  # another user: its own push
    queue.put("dm:a:c", typing_message("dm:a:c", "a"))  # another channel: its own push
    got = [orjson.loads(payload) for payload in await drain(queue)]
    assert [(p["op"], p["channel"], p["user"]) for p in got] == [
        ("typing", "dm:a:b", "a"),
        ("read", "dm:a:b", "a"),
        ("leave", "dm:a:b", "b"),
        ("typing", "dm:a:b", "b"),
        ("typing", "dm:a:c", "a"),
    ]
    assert got[1]["offset"] == 5
    assert (stats.coalesced, stats.dropped) == (3, 0)


async def test_a_full_queue_drops_the_newest_and_counts_it() -> None:
    stats = PushStats()
    queue = PushQueue(stats, limit=2)
    for user in ("a", "b", "c"):
        queue.put("room:x", typing_message("room:x", user))
    queue.put("room:x", typing_message("room:x", "a"))  # replaces a queued one: still taken
    queue.put("room:x", b'{"op":"other"}')  # nothing to coalesce by, and no room
    assert stats.dropped == 2
    assert [orjson.loads(p)["user"] for p in await drain(queue)] == ["a", "b"]
    queue.put("room:x", typing_message("room:x", "c"))
    queue.clear()
    assert (len(queue), stats.dropped) == (0, 3)


async def test_get_waits_for_a_push() -> None:
    queue = PushQueue(PushStats())
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    queue.put("dm:a:b", typing_message("dm:a:b", "a"))
    assert (await asyncio.wait_for(waiting, 1))[0] == "dm:a:b"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.get(), 0.05)
