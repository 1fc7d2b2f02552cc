"""Hot counters in one process: the coalescing window on a fake clock, seeding, flushing."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import orjson
import pytest

from gateway.fanout.counts import MISSING_SECONDS, Coalescer, LocalHotCounts, video_of
from gateway.settings import Settings, SettingsError, load_settings
from handlers.messages import counts_message as counts_payload
from storage.errors import Unavailable
from storage.videos import Video, VideoCounts, VideoStatus

WINDOW = 0.25


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeStore:
    """The two store calls the counters make, with failures on demand."""

    def __init__(self) -> None:
        self.videos: dict[str, Video] = {}
        self.reads = 0
        self.saves: list[dict[str, VideoCounts]] = []
        self.fail = False
        self.read_delay = 0.0

    def add_video(self, video_id: str, counts: VideoCounts | None = None) -> None:
        self.videos[video_id] = Video(
            video_id, "owner", "t", VideoStatus.READY, 0, counts or VideoCounts()
        )

    async def get_video(self, video_id: str) -> Video | None:
        self.reads += 1
        await asyncio.sleep(self.read_delay)
        if self.fail:
            raise Unavailable("down")
        return self.videos.get(video_id)

    async def save_video_counts(self, counts: dict[str, VideoCounts]) -> None:
        if self.fail:
            raise Unavailable("down")
        self.saves.append(dict(counts))
        for video_id, totals in counts.items():
            video = self.videos.get(video_id)
            if video is not None and video.counts.version < totals.version:
                self.videos[video_id] = Video(
                    video.id, video.owner, video.title, video.status, 0, totals
                )


class Pushes:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, channel: str, payload: bytes) -> None:
        self.sent.append((channel, orjson.loads(payload)))


def make_counts(store: FakeStore, clock: Clock, pushes: Pushes, viewers: int = 7) -> LocalHotCounts:
    async def watching(channel: str) -> int:
        return viewers

    return LocalHotCounts(
        store,  # type: ignore[arg-type]
        pushes,
        watching,
        window=WINDOW,
        flush_interval=1.0,
        clock=clock,
    )


def test_the_coalescer_hands_out_changes_at_most_once_per_window() -> None:
    clock = Clock()
    coalescer = Coalescer(WINDOW, clock)
    sweeps = 0
    start = clock.now
    for i in range(10_000):  # one change a millisecond for 10 s, asked after every change
        coalescer.mark("v1" if i % 2 else "v2")
        clock.now += 0.001
        if coalescer.due():
            sweeps += 1
    duration = clock.now - start

    assert sweeps <= math.ceil(duration / WINDOW) + 1
    assert sweeps >= duration / WINDOW - 1  # and it keeps up: one sweep per window
    assert coalescer.due() == []  # inside the window
    clock.now += WINDOW
    assert sorted(coalescer.due()) == ["v1", "v2"]  # the last changes go out
    assert coalescer.due() == []


def test_the_coalescer_says_how_long_to_wait() -> None:
    clock = Clock()
    coalescer = Coalescer(WINDOW, clock)
    assert coalescer.delay() == WINDOW  # nothing changed: poll
    coalescer.mark("v1")
    assert coalescer.delay() == 0.0  # first change after a quiet spell: at once
    assert coalescer.due() == ["v1"]
    coalescer.mark("v1")
    clock.now += 0.1
    assert coalescer.delay() == pytest.approx(0.15)
    clock.now += 0.15
    assert coalescer.due() == ["v1"]


def test_a_sweep_takes_at_most_its_batch_and_leaves_the_rest() -> None:
    clock = Clock()
    coalescer = Coalescer(WINDOW, clock)
    for i in range(5):
        coalescer.mark(f"v{i}")
    first = coalescer.due(limit=3)
    clock.now += WINDOW
    second = coalescer.due(limit=3)
    assert (len(first), len(second)) == (3, 2)
    assert sorted(first + second) == [f"v{i}" for i in range(5)]


def test_video_channels_and_payloads() -> None:
    assert video_of("video:abc") == "abc"
    assert video_of("video:") is None
    assert video_of("room:video:abc") is None
    assert orjson.loads(counts_payload("v", VideoCounts(-1, 2, 3, 9, 7, 1500), 4)) == {
        "op": "counts",
        "channel": "video:v",
        "video_id": "v",
        "likes": 0,
        "comments": 2,
        "shares": 3,
        "views": 7,
        "watch_seconds": 1,
        "viewers": 4,
        "version": 9,
    }


async def test_a_flood_of_likes_gives_few_pushes_with_the_absolute_total() -> None:
    clock, store, pushes = Clock(), FakeStore(), Pushes()
    store.add_video("v", VideoCounts(likes=10, version=10))
    counts = make_counts(store, clock, pushes)
    start = clock.now
    for _ in range(5000):  # 5,000 likes over 5 s, a tick after each
        await counts.add("v", likes=1)
        clock.now += 0.001
        await counts.tick()
    clock.now += WINDOW
    await counts.tick()
    duration = clock.now - start

    assert len(pushes.sent) <= math.ceil(duration / WINDOW) + 1
    channel, last = pushes.sent[-1]
    assert channel == "video:v"
    assert (last["likes"], last["version"], last["viewers"]) == (5010, 5010, 7)
    assert [p["likes"] for _, p in pushes.sent] == sorted(p["likes"] for _, p in pushes.sent)
    assert store.reads == 1  # seeded once
    assert await counts.totals("v") == VideoCounts(5010, 0, 0, 5010)


async def test_totals_are_flushed_in_batches_and_converge() -> None:
    clock, store, pushes = Clock(), FakeStore(), Pushes()
    for name in ("a", "b"):
        store.add_video(name)
    counts = make_counts(store, clock, pushes)
    for _ in range(3):
        await counts.add("a", likes=1)
    await counts.add("b", comments=1, shares=2)
    await counts.add("b", comments=-1)

    assert await counts.flush() == 2
    assert len(store.saves) == 1  # one batch
    assert store.videos["a"].counts == VideoCounts(3, 0, 0, 3)
    assert store.videos["b"].counts == VideoCounts(0, 0, 2, 2)
    assert await counts.flush() == 0  # nothing changed since: nothing written
    await counts.add("a", likes=-1)
    assert await counts.flush() == 1
    assert store.videos["a"].counts == VideoCounts(2, 0, 0, 4)


async def test_a_failed_flush_is_retried_and_a_failed_seed_is_counted_later() -> None:
    clock, store, pushes = Clock(), FakeStore(), Pushes()
    store.add_video("v")
    counts = make_counts(store, clock, pushes)
    store.fail = True
    await counts.add("v", likes=1)  # cannot seed: owed, never raised
    assert await counts.totals("v") is None
    assert await counts.flush() == 0
    store.fail = False
    assert await counts.flush() == 1  # the owed like is counted, then written
    assert store.videos["v"].counts == VideoCounts(1, 0, 0, 1)
    await counts.add("v", likes=1)
    store.fail = True
    assert await counts.flush() == 0
    store.fail = False
    assert await counts.flush() == 1
    assert store.videos["v"].counts == VideoCounts(2, 0, 0, 2)


async def test_concurrent_first_likes_seed_once_and_count_all() -> None:
    clock, store, pushes = Clock(), FakeStore(), Pushes()
    store.add_video("v", VideoCounts(likes=100, version=100))
    store.read_delay = 0.01
    counts = make_counts(store, clock, pushes)

    await asyncio.gather(*(counts.add("v", likes=1) for _ in range(50)))

    assert store.reads == 1
    assert await counts.totals("v") == VideoCounts(150, 0, 0, 150)


async def test_a_missing_video_costs_one_store_read_per_ten_seconds() -> None:
    clock, store, pushes = Clock(), FakeStore(), Pushes()
    counts = make_counts(store, clock, pushes)
    for _ in range(5):
        await counts.add("ghost", views=1)
    assert (store.reads, await counts.totals("ghost")) == (1, None)
    clock.now += MISSING_SECONDS + 0.1
    store.add_video("ghost")  # (ids are the server's: this only shows the cache expires)
    await counts.add("ghost", views=1)
    assert store.reads == 2
    assert await counts.totals("ghost") == VideoCounts(version=1, views=1)


async def test_unknown_videos_are_not_counted_and_viewers_alone_push() -> None:
    clock, store, pushes = Clock(), FakeStore(), Pushes()
    store.add_video("v", VideoCounts(likes=4, version=4))
    counts = make_counts(store, clock, pushes, viewers=3)

    await counts.add("ghost", likes=1)
    await counts.touch("v")  # the audience changed, nothing else
    await counts.tick()

    assert await counts.totals("ghost") is None
    assert [(c, p["likes"], p["viewers"], p["version"]) for c, p in pushes.sent] == [
        ("video:v", 4, 3, 4)
    ]
    assert await counts.flush() == 0  # a viewer change is not written to the store


def test_the_settings_of_videos_and_counts_are_validated() -> None:
    env = {
        "MOOSIC_JWT_SECRET": "x" * 32,
        "MOOSIC_COUNTS_PUSH_WINDOW": "0.5",
        "MOOSIC_COUNTS_FLUSH_INTERVAL": "2",
        "MOOSIC_VIDEO_CACHE_SECONDS": "0",
        "MOOSIC_VIDEO_READY_ON_CREATE": "1",
    }
    settings = load_settings(env)
    assert (settings.counts.counts_push_window, settings.counts.counts_flush_interval) == (0.5, 2.0)
    assert (settings.counts.video_cache_seconds, settings.media.video_ready_on_create) == (
        0.0,
        True,
    )
    assert Settings().media.video_ready_on_create is False  # refused unless asked for
    bad = {**env, "MOOSIC_COUNTS_PUSH_WINDOW": "0", "MOOSIC_COUNTS_FLUSH_INTERVAL": "600"}
    with pytest.raises(SettingsError) as raised:
        load_settings(bad)
    assert [p.split("=")[0] for p in raised.value.problems] == [
        "MOOSIC_COUNTS_PUSH_WINDOW",
        "MOOSIC_COUNTS_FLUSH_INTERVAL",
    ]
