"""What the clickstream says about videos, summed per node and handed on every interval.

The intake calls :meth:`Tally.observe` for every event it took (after dedupe, so a phone that
sends its offline buffer twice counts once); that is a dict update, no I/O. Every
``interval`` (1 s) the sums go on in the background:

- views (``view_start``) and milliseconds watched (``seconds_watched`` of ``watch_progress``
  and ``view_end``) to each video's hot counters, so they reach the video's totals, its
  ``counts`` pushes and the store like likes do: one change per video per node per interval,
  however many people watch it;
- engagement scores to :mod:`storage.trending`, for everyone and for the viewer's
  country, weighted by :data:`WEIGHTS`.

Bounded: at most ``max_videos`` videos wait per interval. Events about further videos wait for
the next interval's sums only if there is room: past the bound they are not summed and are
counted (``moosic_clickstream_tally_dropped_total``); the events themselves still reach the
sink. A video the store does not know is dropped by the hot counters (a client can name any
id), and kept out of trending answers by the ``trending`` op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from gateway.fanout.counts import Change, LocalHotCounts, RedisHotCounts
from handlers.events import Event, Like, Share, ViewEnd, ViewStart, WatchProgress
from handlers.trending import EVERYONE
from storage.redis.client import FAILURES
from storage.redis.resp import RespError
from storage.redis.trending import RedisTrending
from storage.trending import LocalTrending

log = logging.getLogger(__name__)

MAX_VIDEOS = 10_000
"""Videos whose sums wait at once, per node."""
COUNT_CONCURRENCY = 32
"""Hot-counter changes sent at once during a hand-over."""


@dataclass(frozen=True, slots=True)
class Weights:
    """How much each kind of engagement adds to a video's trending score."""

    view: float = 1.0
    watched_second: float = 0.1
    seconds_per_event: float = 60.0
    """At most this many seconds of one event count (a phone left playing is not a fan)."""
    completed: float = 2.0
    like: float = 4.0
    share: float = 8.0


WEIGHTS = Weights()


def engagement(event: Event, weights: Weights = WEIGHTS) -> float:
    """The trending score one event adds to its video (0: none)."""
    if isinstance(event, ViewStart):
        return weights.view
    if isinstance(event, WatchProgress | ViewEnd):
        score = min(event.seconds_watched, weights.seconds_per_event) * weights.watched_second
        if isinstance(event, ViewEnd) and event.completed:
            score += weights.completed
        return score
    if isinstance(event, Like):
        return weights.like if event.liked else -weights.like
    if isinstance(event, Share):
        return weights.share
    return 0.0


class Tally:
    """One node's sums of video engagement, handed to the hot counters and trending."""

    def __init__(
        self,
        counts: LocalHotCounts | RedisHotCounts,
        trending: LocalTrending | RedisTrending,
        *,
        interval: float = 1.0,
        max_videos: int = MAX_VIDEOS,
    ) -> None:
        self._counts = counts
        self._trending = trending
        self._interval = interval
        self._max_videos = max_videos
        self._watch: dict[str, list[int]] = {}
        """video -> [views, milliseconds watched] since the last hand-over."""
        self._scores: dict[tuple[str, str], float] = {}
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        """Events not summed: too many videos were waiting."""
        self.handed = 0
        """Videos' sums handed to the hot counters."""
        self.failed = 0
        """Hand-overs to trending that failed (their scores are lost)."""

    def observe(self, event: Event, country: str | None) -> None:
        video_id: str | None = getattr(event, "video_id", None)
        if video_id is None:
            return
        views = 1 if isinstance(event, ViewStart) else 0
        watched = 0
        if isinstance(event, WatchProgress | ViewEnd):
            watched = int(event.seconds_watched * 1000)
        score = engagement(event)
        if views or watched:
            sums = self._watch.get(video_id)
            if sums is None:
                if len(self._watch) >= self._max_videos:
                    self.dropped += 1
                    return
                sums = self._watch[video_id] = [0, 0]
            sums[0] += views
            sums[1] += watched
        if score:
            scopes = (EVERYONE,) if country is None else (EVERYONE, country)
            for scope in scopes:
                key = (scope, video_id)
                if key not in self._scores and len(self._scores) >= 2 * self._max_videos:
                    self.dropped += 1
                    return
                self._scores[key] = self._scores.get(key, 0.0) + score

    @property
    def waiting(self) -> int:
        return len(self._watch)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="clickstream-tally")

    async def close(self) -> None:
        """Stop, then hand over what is left (a clean stop loses no counted view)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.hand_over()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.hand_over()
            except Exception:  # a bug: keep going, the next interval may work
                log.exception("clickstream tally: the hand-over failed")

    async def hand_over(self) -> int:
        """Give the sums to the hot counters and trending now; return how many videos."""
        watch, self._watch = self._watch, {}
        scores, self._scores = self._scores, {}
        if scores:
            try:
                await self._trending.add(scores)
            except (*FAILURES, RespError) as exc:
                self.failed += 1
                log.warning("trending: %d scores lost (%s)", len(scores), exc)
        slots = asyncio.Semaphore(COUNT_CONCURRENCY)

        async def count(video_id: str, views: int, watched: int) -> None:
            async with slots:  # the hot counters never raise: what fails is counted later
                await self._counts.change(video_id, Change(views=views, watch_ms=watched))

        await asyncio.gather(*(count(v, views, ms) for v, (views, ms) in watch.items()))
        self.handed += len(watch)
        return len(watch)
