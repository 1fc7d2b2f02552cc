"""Trending: the videos with the most engagement in a sliding window, overall and per country.

Fed by the clickstream: each node sums its events' engagement per video for a moment
(``gateway/clickstream/tally.py``) and hands the sums here; read by the ``trending`` op
(and ``GET /v1/trending``). Nothing here scans the store or every key.

The window (``MOOSIC_TRENDING_WINDOW``, 3,600 s) is :data:`BUCKETS` buckets of ``window / 12``
seconds, numbered by time; a score lands in the bucket of now, and a read sums the bucket of
now and the eleven before it, so the window slides by one bucket at a time and an old bucket is
never read again (it expires). Each scope has its buckets: ``*`` (everyone) and each country
(the caller's country as the country gate read it).

Bounded: a bucket keeps at most :data:`KEEP` videos per scope. When it grows past twice that it
is cut to the ``KEEP`` best, so a video with little engagement in a busy bucket can be
forgotten there (it could not be near the top of that bucket anyway). A read's answer is cached
for :data:`READ_CACHE_SECONDS` per scope (at most :data:`MAX_CACHED` scopes).

Two backends, chosen with the broker: :class:`LocalTrending` (one node, in memory, here) and
``RedisTrending`` (all nodes, ``storage/redis/trending.py``): one sorted set per scope and bucket, every key of a scope
under one hash tag, so the add script (``ZINCRBY``, the cut, the expiry) and the read script
(``ZUNIONSTORE`` of the scope's buckets into a scratch key, the best ``limit``, ``DEL``) each
run in one slot of a Redis Cluster.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

BUCKETS = 12
"""Buckets per window."""
KEEP = 2000
"""Videos a bucket keeps per scope (cut back to this from twice as many)."""
READ_CACHE_SECONDS = 2.0
MAX_CACHED = 512
"""Scopes whose last answer a node keeps (oldest forgotten first)."""
MAX_LIMIT = 100
REDIS_TIMEOUT = 2.0
ADD_BATCH = 2000
"""Arguments (score and video, so half as many videos) per add script call."""

Scores = Mapping[tuple[str, str], float]
"""(scope, video id) -> engagement to add now."""
Top = list[tuple[str, float]]
"""(video id, score), best first."""


class ReadCache:
    """The last answer per scope, for a short time (bounded, oldest forgotten first)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._answers: OrderedDict[str, tuple[float, Top]] = OrderedDict()

    def get(self, scope: str) -> Top | None:
        found = self._answers.get(scope)
        if found is None or found[0] < self._clock():
            return None
        return found[1]

    def put(self, scope: str, top: Top) -> None:
        self._answers[scope] = (self._clock() + READ_CACHE_SECONDS, top)
        self._answers.move_to_end(scope)
        while len(self._answers) > MAX_CACHED:
            self._answers.popitem(last=False)


class Buckets:
    """Bucket arithmetic shared by both backends."""

    def __init__(self, window: float, clock: Callable[[], float]) -> None:
        self.window = window
        self.bucket_seconds = window / BUCKETS
        self._clock = clock

    def now(self) -> int:
        return int(self._clock() // self.bucket_seconds)

    def live(self) -> range:
        """The buckets a read sums: now and the ones before it inside the window."""
        current = self.now()
        return range(current - BUCKETS + 1, current + 1)


class LocalTrending:
    """Trending on one node, in memory."""

    def __init__(self, *, window: float, clock: Callable[[], float] = time.time) -> None:
        self._buckets = Buckets(window, clock)
        self.window = window
        self._scores: dict[str, dict[int, dict[str, float]]] = {}
        """scope -> bucket -> video -> score."""

    async def add(self, scores: Scores) -> None:
        bucket = self._buckets.now()
        oldest = bucket - BUCKETS + 1
        for (scope, video_id), score in scores.items():
            buckets = self._scores.setdefault(scope, {})
            for old in [b for b in buckets if b < oldest]:
                del buckets[old]
            videos = buckets.setdefault(bucket, {})
            videos[video_id] = videos.get(video_id, 0.0) + score
            if len(videos) > 2 * KEEP:
                best = sorted(videos.items(), key=lambda item: -item[1])[:KEEP]
                buckets[bucket] = dict(best)

    async def top(self, scope: str, limit: int) -> Top:
        buckets = self._scores.get(scope, {})
        totals: dict[str, float] = {}
        for bucket in self._buckets.live():
            for video_id, score in buckets.get(bucket, {}).items():
                totals[video_id] = totals.get(video_id, 0.0) + score
        # Best first; equal scores in reverse id order, as Redis's ZREVRANGE has them.
        ranked = sorted(totals.items(), key=lambda item: (item[1], item[0]), reverse=True)
        return [(video_id, score) for video_id, score in ranked if score > 0][:limit]
