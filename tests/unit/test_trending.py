"""Trending in one process: weights, the sliding window, countries, bounds; the clickstream
tally that feeds it and the hot counters (views and watch time)."""

from __future__ import annotations

import msgspec
import pytest

from gateway.clickstream.tally import WEIGHTS, Tally, engagement
from handlers.events import AnyEvent, Event
from storage.trending import BUCKETS, KEEP, LocalTrending
from storage.videos import VideoCounts
from tests.unit.test_counts import Clock, FakeStore, Pushes, make_counts

WINDOW = 1200.0  # twelve buckets of 100 s


def event(kind: str, video_id: str = "v1", **fields: object) -> Event:
    doc = {"type": kind, "event_id": "e", "client_ts": 1, "video_id": video_id, **fields}
    decoded: Event = msgspec.convert(doc, AnyEvent)
    return decoded


def test_each_kind_of_engagement_has_its_weight() -> None:
    assert engagement(event("view_start")) == WEIGHTS.view == 1.0
    assert engagement(event("watch_progress", seconds_watched=10.0)) == pytest.approx(1.0)
    assert engagement(event("watch_progress", seconds_watched=3600.0)) == pytest.approx(6.0)
    ended = event("view_end", seconds_watched=5.0, completed=True)
    assert engagement(ended) == pytest.approx(0.5 + 2.0)
    assert engagement(event("like")) == 4.0
    assert engagement(event("like", liked=False)) == -4.0
    assert engagement(event("share", target="dm")) == 8.0
    assert engagement(event("swipe", direction="up")) == 0.0


async def test_the_window_slides_and_countries_are_apart() -> None:
    clock = Clock()
    clock.now = 10_000.0
    board = LocalTrending(window=WINDOW, clock=clock)
    await board.add({("*", "old"): 50.0, ("KH", "old"): 50.0})
    clock.now += 600
    await board.add({("*", "a"): 10.0, ("*", "b"): 20.0, ("KH", "a"): 10.0, ("AU", "b"): 20.0})
    await board.add({("*", "a"): 15.0, ("KH", "a"): 15.0})

    assert await board.top("*", 10) == [("old", 50.0), ("a", 25.0), ("b", 20.0)]
    assert await board.top("KH", 10) == [("old", 50.0), ("a", 25.0)]
    assert await board.top("AU", 1) == [("b", 20.0)]
    assert await board.top("US", 10) == []

    # The first bucket leaves the window once twelve newer ones began.
    clock.now += (BUCKETS - 6) * (WINDOW / BUCKETS)
    assert await board.top("*", 10) == [("a", 25.0), ("b", 20.0)]
    clock.now += WINDOW
    assert await board.top("*", 10) == []


async def test_taken_back_likes_and_ties_order_like_redis() -> None:
    board = LocalTrending(window=WINDOW, clock=Clock())
    await board.add({("*", "liked"): 4.0, ("*", "unliked"): 4.0, ("*", "b"): 1.0, ("*", "a"): 1.0})
    await board.add({("*", "unliked"): -4.0})
    # Nothing at zero or below; equal scores in reverse id order (ZREVRANGE's).
    assert await board.top("*", 10) == [("liked", 4.0), ("b", 1.0), ("a", 1.0)]


async def test_a_bucket_keeps_its_best_when_too_many_videos_come() -> None:
    board = LocalTrending(window=WINDOW, clock=Clock())
    await board.add({("*", f"v{i:05}"): float(i + 1) for i in range(2 * KEEP + 1)})
    top = await board.top("*", 3 * KEEP)
    assert len(top) == KEEP
    assert top[0] == (f"v{2 * KEEP:05}", float(2 * KEEP + 1))
    assert top[-1] == (f"v{KEEP + 1:05}", float(KEEP + 2))


async def test_the_tally_sums_views_watch_time_and_scores_once_per_hand_over() -> None:
    store = FakeStore()
    store.add_video("v1", VideoCounts(likes=3, version=3))
    store.add_video("v2")
    clock = Clock()
    counts = make_counts(store, clock, Pushes())
    board = LocalTrending(window=WINDOW, clock=clock)
    tally = Tally(counts, board, interval=60.0)

    for _ in range(3):
        tally.observe(event("view_start"), "KH")
    tally.observe(event("watch_progress", seconds_watched=12.5), "KH")
    tally.observe(event("view_end", seconds_watched=2.25, completed=True), "KH")
    tally.observe(event("view_start", "v2"), None)
    tally.observe(event("share", "v2", target="external"), "AU")
    tally.observe(event("view_start", "nobody-knows"), "KH")
    tally.observe(event("app_open", platform="ios"), "KH")  # no video: nothing to sum
    assert tally.waiting == 3

    assert await tally.hand_over() == 3
    assert tally.waiting == 0
    assert await counts.totals("v1") == VideoCounts(
        likes=3, version=4, views=3, watch_ms=14_750
    )  # one change for the whole interval
    assert await counts.totals("v2") == VideoCounts(version=1, views=1)
    assert await counts.totals("nobody-knows") is None  # the store does not know it
    assert await board.top("*", 10) == [
        ("v2", pytest.approx(9.0)),
        ("v1", pytest.approx(3 + 1.25 + 0.225 + 2)),
        ("nobody-knows", 1.0),
    ]
    assert await board.top("KH", 10) == [
        ("v1", pytest.approx(6.475)),
        ("nobody-knows", 1.0),
    ]
    assert await board.top("AU", 10) == [("v2", 8.0)]
    assert await tally.hand_over() == 0  # nothing twice


async def test_the_tally_is_bounded_and_says_what_it_dropped() -> None:
    store = FakeStore()
    counts = make_counts(store, Clock(), Pushes())
    tally = Tally(counts, LocalTrending(window=WINDOW), interval=60.0, max_videos=2)
    for video_id in ("a", "b", "c", "a"):
        tally.observe(event("view_start", video_id), None)
    assert (tally.waiting, tally.dropped) == (2, 1)
