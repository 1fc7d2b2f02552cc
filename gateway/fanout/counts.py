"""Hot counters: each video's live likes, comments and shares, pushed coalesced, stored in batches.

A viral video takes thousands of likes a second while thousands watch it. Per like the gateway
does one conditional write (the like record, the source of truth, in the store) and, only when
that changed something, one increment here. Two jobs run on every node:

- **Pushes.** At most one ``counts`` push per video per window (``MOOSIC_COUNTS_PUSH_WINDOW``,
  250 ms), across all nodes, carrying absolute totals and a version:

  ``{"op": "counts", "channel": "video:V", "video_id": "V", "likes": 5000, "comments": 12,
  "shares": 3, "views": 9000, "watch_seconds": 61234, "viewers": 250, "version": 5015}``

  Views and watch time come from the clickstream (``view_start``, ``watch_progress``,
  ``view_end``), summed per node for a moment first (:class:`gateway.clickstream.tally.Tally`),
  so a video watched by thousands costs one change per node per interval, not one per event.

- **Flushes.** Every ``MOOSIC_COUNTS_FLUSH_INTERVAL`` (1 s) the totals of the videos that
  changed are written to the store in one batch, absolute and versioned
  (:meth:`storage.videos.VideoStore.save_video_counts`), so the stored totals converge on the
  exact ones, late or repeated writes are harmless, and a video costs the store one write per
  interval however many likes it takes.

Two backends, chosen with the broker (Redis when the nodes share one):

``LocalHotCounts`` (one node, no Redis) keeps the totals in a dict (``storage/counts.py``),
seeded from the store on a video's first change. A :class:`Coalescer` gates pushes: a sweep of every changed video, then
nothing for a window, so a video gets at most ``ceil(D / window) + 1`` pushes in D seconds.

``RedisHotCounts`` (several nodes) keeps its state in Redis (``storage/redis/counts.py``: the
hashes, marks and locks, and the scripts' calls), one hash per video: ``likes``, ``comments``,
``shares``, ``views``, ``watch_ms`` and ``version``, seeded from the store when missing and changed by a Lua script that
also marks the video for the next push and the next flush. Every node runs the push script once
a window; the script takes a lock (``SET NX PX window``) and, only if it got it, publishes the
totals of every marked video, from inside Redis. So at most one sweep happens per window for the
whole cluster, whatever the number of nodes or their clocks (the lock expires on Redis's clock):
each video gets at most ``ceil(D / window) + 1`` pushes in D seconds, and since the script reads
and publishes in one step, pushes leave Redis in version order. The flush takes a lock too (one
node writes per interval) and unmarks a video only if its version did not move meanwhile, so
a node that dies mid-flush leaves the work to the next one.

Viewers are the presence count of ``video:{id}`` (distinct users subscribed on any node); a
change of audience marks the video for the next push as well.

Limits (docs/storage.md has more): a change counted in Redis and not yet flushed is lost if
Redis loses its data (at most one flush interval's worth: run Redis with persistence or
replication); a node that dies between a like's store write and its increment loses that one
increment; the in-process backend loses at most one flush interval when its process dies.
:meth:`storage.videos.VideoStore.count_likes` recounts likes from their records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway.fanout.broker import envelope
from gateway.fanout.hub import Publisher
from gateway.settings import Settings
from handlers.messages import counts_message
from storage.base import Store
from storage.counts import Entry, LocalCounters
from storage.errors import StorageError
from storage.presence import LocalPresence
from storage.redis.client import RedisClient
from storage.redis.counts import VIDEO_PREFIX, Partition, RedisCounters
from storage.redis.presence import RedisPresence
from storage.redis.resp import ConnectionLost, RespError
from storage.videos import Video, VideoCounts

log = logging.getLogger(__name__)

PUSH_BATCH = 1000
"""Videos pushed in one window at most; more wait for the next one."""
FLUSH_BATCH = 500
"""Videos written to the store per call."""
HOT_TTL = 3600.0
"""Seconds a video's counter stays in Redis after its last change. The flush runs every second
or so, so it has long been written to the store when it expires; the next change re-seeds it."""
IDLE_SECONDS = 600.0
"""Seconds an unchanged, flushed video stays in the in-process counters."""
REDIS_TIMEOUT = 2.0
MAX_OWED = 100_000
MISSING_SECONDS = 10.0
"""Seconds a video the store did not have is answered as missing without reading again."""
MAX_MISSING = 10_000
"""Videos whose changes wait to be counted (Redis or the store did not answer) at most."""

Publish = Callable[[str, bytes], Awaitable[None]]
Viewers = Callable[[str], Awaitable[int]]
"""(channel) -> how many users watch it now."""
_FAILURES = (StorageError, ConnectionLost, RespError, OSError, TimeoutError)


def video_of(channel: str) -> str | None:
    """Return the video id of a ``video:{id}`` channel, else None."""
    if not channel.startswith(VIDEO_PREFIX):
        return None
    return channel[len(VIDEO_PREFIX) :] or None


class _Seeds:
    """Reads of video records to seed counters: one read per video at a time, shared by every
    caller that needs it (a flash crowd's first likes cost the store one read, not thousands).
    The read runs in its own task, so a caller that goes away does not cancel it for others.

    A video the store does not have is remembered as missing for :data:`MISSING_SECONDS` (at
    most :data:`MAX_MISSING` ids, oldest forgotten first): the clickstream may name any id, and
    a client repeating one must not cost a store read every interval."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._reads: dict[str, asyncio.Task[Video | None]] = {}
        self._missing: OrderedDict[str, float] = OrderedDict()
        self._clock = clock

    async def get(self, video_id: str) -> Video | None:
        until = self._missing.get(video_id)
        if until is not None:
            if until > self._clock():
                return None
            del self._missing[video_id]
        task = self._reads.get(video_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._store.get_video(video_id))
            self._reads[video_id] = task
            task.add_done_callback(lambda done: self._finished(video_id, done))
        video = await asyncio.shield(task)
        if video is None:
            self._missing[video_id] = self._clock() + MISSING_SECONDS
            self._missing.move_to_end(video_id)
            while len(self._missing) > MAX_MISSING:
                self._missing.popitem(last=False)
        return video

    def _finished(self, video_id: str, task: asyncio.Task[Video | None]) -> None:
        if self._reads.get(video_id) is task:
            del self._reads[video_id]
        if not task.cancelled():
            task.exception()  # retrieved here too: every waiter may have gone


class Coalescer:
    """Which videos to push now: every changed one, then nothing for ``window`` seconds.

    Pure logic on an injected clock. :meth:`due` hands out the changed videos at most once per
    window, so however often it is called, a video is pushed at most ``ceil(D / window) + 1``
    times in D seconds, and a change is pushed at most ``window`` after the previous sweep.
    """

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._dirty: set[str] = set()
        self._next = float("-inf")

    def mark(self, video_id: str) -> None:
        self._dirty.add(video_id)

    @property
    def pending(self) -> int:
        return len(self._dirty)

    def delay(self) -> float:
        """Seconds until :meth:`due` may return something (a window when nothing changed)."""
        if not self._dirty:
            return self.window
        return max(0.0, self._next - self._clock())

    def due(self, limit: int = PUSH_BATCH) -> list[str]:
        """Return the videos to push now (up to ``limit``), or nothing inside a window."""
        now = self._clock()
        if not self._dirty or now < self._next:
            return []
        self._next = now + self.window
        if len(self._dirty) <= limit:
            videos, self._dirty = list(self._dirty), set()
            return videos
        videos = [self._dirty.pop() for _ in range(limit)]
        return videos


@dataclass(frozen=True, slots=True)
class Change:
    """A change to a video's totals (deltas)."""

    likes: int = 0
    comments: int = 0
    shares: int = 0
    views: int = 0
    watch_ms: int = 0

    def __bool__(self) -> bool:
        return any((self.likes, self.comments, self.shares, self.views, self.watch_ms))

    def __add__(self, other: Change) -> Change:
        return Change(
            self.likes + other.likes,
            self.comments + other.comments,
            self.shares + other.shares,
            self.views + other.views,
            self.watch_ms + other.watch_ms,
        )

    def args(self) -> list[bytes]:
        """The deltas as the bump script reads them."""
        return [str(v).encode() for v in _deltas(self)]


def _deltas(c: Change | VideoCounts) -> tuple[int, int, int, int, int]:
    return (c.likes, c.comments, c.shares, c.views, c.watch_ms)


NOTHING = Change()


@dataclass(slots=True)
class _Owed:
    """Changes that could not be counted yet, per video."""

    deltas: dict[str, Change] = field(default_factory=dict)

    def add(self, video_id: str, change: Change) -> None:
        if video_id not in self.deltas and len(self.deltas) >= MAX_OWED:
            log.error("hot counters: too many uncounted changes; dropping one for %s", video_id)
            return
        self.deltas[video_id] = self.deltas.get(video_id, NOTHING) + change

    def take(self) -> dict[str, Change]:
        taken, self.deltas = self.deltas, {}
        return taken


class _Loops:
    """The background push and flush loops shared by both backends."""

    def __init__(self, store: Store, *, window: float, flush_interval: float) -> None:
        self.window = window
        self.flush_interval = flush_interval
        self.pushed = 0
        """Counts pushes this node sent."""
        self.flushed = 0
        """Videos' totals this node wrote to the store."""
        self._store = store
        self._seeds = _Seeds(store)
        self._tasks: list[asyncio.Task[None]] = []

    async def add(
        self,
        video_id: str,
        *,
        likes: int = 0,
        comments: int = 0,
        shares: int = 0,
        views: int = 0,
        watch_ms: int = 0,
    ) -> None:
        """Count a change (:class:`handlers.ports.HotCounts`); never raises."""
        await self.change(video_id, Change(likes, comments, shares, views, watch_ms))

    async def change(self, video_id: str, change: Change) -> None:
        raise NotImplementedError

    async def tick(self) -> int:
        raise NotImplementedError

    async def flush(self) -> int:
        raise NotImplementedError

    def _push_delay(self) -> float:
        return self.window

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._push_loop(), name="counts-push"),
            loop.create_task(self._flush_loop(), name="counts-flush"),
        ]

    async def close(self) -> None:
        """Stop the loops, then write what is left (one last flush)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        try:
            await self.flush()
        except Exception:
            log.exception("hot counters: the last flush failed")

    async def _push_loop(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._push_delay())
            failing = await self._round(self.tick, "push", failing)

    async def _flush_loop(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.flush_interval)
            failing = await self._round(self.flush, "flush", failing)

    async def _round(self, job: Callable[[], Awaitable[int]], what: str, failing: bool) -> bool:
        """Run one round; return whether it failed. An outage is logged once, not every round."""
        try:
            await job()
        except _FAILURES as exc:
            if not failing:
                log.warning("hot counters: %s failed (%s); retrying every round", what, exc)
            return True
        except Exception:  # a bug: keep going, the next round may work
            log.exception("hot counters: %s failed", what)
            return True
        if failing:
            log.warning("hot counters: %s works again", what)
        return False


class LocalHotCounts(_Loops):
    """Hot counters of one node, in memory (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        publish: Publish,
        viewers: Viewers,
        *,
        window: float,
        flush_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(store, window=window, flush_interval=flush_interval)
        self._publish = publish
        self._viewers = viewers
        self._clock = clock
        self._coalescer = Coalescer(window, clock)
        self._seeds = _Seeds(store, clock)
        self._counters = LocalCounters(clock)
        self._owed = _Owed()
        self._tasks = []

    async def _entry(self, video_id: str) -> Entry | None:
        """The video's counter, seeded from the store once (None: no such video)."""
        entry = self._counters.get(video_id)
        if entry is not None:
            return entry
        video = await self._seeds.get(video_id)
        if video is None:
            return None
        return self._counters.seed(video_id, video.counts)  # unless made meanwhile

    async def change(self, video_id: str, change: Change) -> None:
        try:
            entry = await self._entry(video_id)
        except _FAILURES as exc:
            log.warning("hot counters: cannot read video %s (%s); counting later", video_id, exc)
            self._owed.add(video_id, change)
            return
        if entry is None:
            return
        if change:
            self._counters.bump(video_id, entry, _deltas(change))
        self._coalescer.mark(video_id)

    async def touch(self, video_id: str) -> None:
        """The video's audience changed: push its totals (and viewers) in the next window."""
        await self.change(video_id, NOTHING)

    async def totals(self, video_id: str) -> VideoCounts | None:
        return self._counters.totals(video_id)

    def _push_delay(self) -> float:
        return self._coalescer.delay()

    async def tick(self) -> int:
        """Push the totals of the videos that changed, if the window allows it now."""
        sent = 0
        for video_id in self._coalescer.due():
            entry = self._counters.get(video_id)
            if entry is None:
                continue
            viewers = await self._viewers(VIDEO_PREFIX + video_id)
            await self._publish(
                VIDEO_PREFIX + video_id, counts_message(video_id, entry.counts(), viewers)
            )
            sent += 1
        self.pushed += sent
        return sent

    async def flush(self) -> int:
        """Write the changed videos' totals to the store; forget long-idle, flushed ones."""
        for video_id, change in self._owed.take().items():
            await self.change(video_id, change)
        written = 0
        batch: dict[str, VideoCounts] = {}
        for video_id in self._counters.unflushed():
            counts = self._counters.totals(video_id)
            if counts is None:  # never: a video waiting for its flush is not forgotten
                continue
            batch[video_id] = counts
            if len(batch) >= FLUSH_BATCH:
                written += await self._save(batch)
                batch = {}
        if batch:
            written += await self._save(batch)
        self._counters.forget_idle(IDLE_SECONDS)
        return written

    async def _save(self, batch: dict[str, VideoCounts]) -> int:
        try:
            await self._store.save_video_counts(batch)
        except _FAILURES as exc:
            log.warning("hot counters: flush of %d videos failed (%s); retrying", len(batch), exc)
            return 0
        for video_id, written in batch.items():
            self._counters.flushed(video_id, written.version)
        self.flushed += len(batch)
        return len(batch)


class RedisHotCounts(_Loops):
    """Hot counters shared by every node through Redis (see the module docstring); their state
    is :class:`storage.redis.counts.RedisCounters`'.

    Each partition has its own marks and locks, so a window costs a push script per partition
    and a flush interval a lock per partition. On a cluster the push script hands its pushes
    back and the node publishes them; ``publish`` is how.
    """

    def __init__(
        self,
        store: Store,
        redis: RedisClient,
        *,
        prefix: str,
        viewers_prefix: Callable[[int], bytes],
        window: float,
        flush_interval: float,
        publish: Publish | None = None,
        ttl: float = HOT_TTL,
    ) -> None:
        super().__init__(store, window=window, flush_interval=flush_interval)
        self._counters = RedisCounters(
            redis,
            prefix=prefix,
            viewers_prefix=viewers_prefix,
            # Offset 0 (ephemeral), no epoch, no node of ours: every node delivers it.
            envelope_head=envelope(0, "", b"-", b""),
            ttl=ttl,
            window=window,
            flush_interval=flush_interval,
            timeout=REDIS_TIMEOUT,
        )
        self._publish = publish if redis.cluster else None
        if redis.cluster and publish is None:
            raise ValueError("hot counters on a Redis Cluster publish through the hub")
        self._owed = _Owed()
        self._tasks = []

    async def change(self, video_id: str, change: Change) -> None:
        try:
            await self._bump(video_id, change)
        except _FAILURES as exc:
            log.warning("hot counters: cannot count for %s (%s); counting later", video_id, exc)
            self._owed.add(video_id, change)

    async def _bump(self, video_id: str, change: Change) -> None:
        deltas = _deltas(change)
        if await self._counters.bump(video_id, deltas):
            return
        # No counter yet (or it expired): seed it from the store. Concurrent seeders read the
        # same stored totals (only a flush of this very counter changes them), and the script
        # seeds only a missing counter, so every change is counted once.
        video = await self._seeds.get(video_id)
        if video is None:
            return
        c = video.counts
        await self._counters.bump(video_id, deltas, (*_deltas(c), c.version))

    async def touch(self, video_id: str) -> None:
        await self.change(video_id, NOTHING)

    async def totals(self, video_id: str) -> VideoCounts | None:
        try:
            return await self._counters.read(video_id)
        except _FAILURES as exc:
            log.warning("hot counters: cannot read %s (%s); using stored totals", video_id, exc)
            return None

    async def tick(self) -> int:
        """Run the push script of every partition: only the node that takes a partition's
        window lock pushes its videos."""
        sent = await asyncio.gather(*(self._tick(part) for part in self._counters.partitions))
        count = sum(sent)
        self.pushed += count
        return count

    async def _tick(self, part: Partition) -> int:
        found = await self._counters.push_marked(part, PUSH_BATCH)
        if isinstance(found, int):
            return found
        assert self._publish is not None  # only a cluster hands its pushes back
        for video_id, payload in found:
            await self._publish(VIDEO_PREFIX + video_id, payload)
        return len(found)

    async def flush(self) -> int:
        """Write every marked video's totals to the store, per partition whose lock this node
        takes."""
        for video_id, change in self._owed.take().items():
            await self.change(video_id, change)
        written = 0
        for part in self._counters.partitions:
            if not await self._counters.lock_flush(part):
                continue  # another node flushes this partition this interval
            async for members in self._counters.marked(part, FLUSH_BATCH):
                written += await self._flush_batch(part, members)
        return written

    async def _flush_batch(self, part: Partition, members: list[bytes]) -> int:
        batch = await self._counters.read_marked(part, members)
        if batch:
            # A failure leaves the videos marked: the next flush (any node's) retries.
            await self._store.save_video_counts(batch)
        await self._counters.unmark(part, members, batch)
        self.flushed += len(batch)
        return len(batch)


def touch_channel(counts: LocalHotCounts | RedisHotCounts) -> Callable[[str], Awaitable[None]]:
    """Return the presence hook: a change of a video channel's audience marks the video."""

    async def changed(channel: str) -> None:
        video_id = video_of(channel)
        if video_id is not None:
            with contextlib.suppress(*_FAILURES):
                await counts.touch(video_id)

    return changed


def build_hot_counts(
    settings: Settings,
    store: Store,
    publish: Publisher,
    presence: LocalPresence | RedisPresence,
    redis: RedisClient | None,
) -> LocalHotCounts | RedisHotCounts:
    """Make the hot counters that go with the broker: in Redis when the nodes share one."""
    if redis is not None and isinstance(presence, RedisPresence):
        return RedisHotCounts(
            store,
            redis,
            prefix=settings.redis.redis_prefix,
            viewers_prefix=lambda part: presence.channel_prefix(part, VIDEO_PREFIX),
            window=settings.counts.counts_push_window,
            flush_interval=settings.counts.counts_flush_interval,
            publish=publish,
        )

    async def viewers(channel: str) -> int:
        return (await presence.here(channel, 0))[1]

    return LocalHotCounts(
        store,
        publish,
        viewers,
        window=settings.counts.counts_push_window,
        flush_interval=settings.counts.counts_flush_interval,
    )
