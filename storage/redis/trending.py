"""Trending shared by every node through Redis (the state; see ``storage/trending.py``).

One sorted set per scope and bucket, every key of a scope under one hash tag, so the add script
(``ZINCRBY``, the cut, the expiry) and the read script (``ZUNIONSTORE`` of the scope's buckets
into a scratch key, the best ``limit``, ``DEL``) each run in one slot of a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from storage.errors import Unavailable
from storage.redis.client import RedisClient, lua
from storage.redis.resp import RespError
from storage.trending import (
    ADD_BATCH,
    KEEP,
    MAX_LIMIT,
    REDIS_TIMEOUT,
    Buckets,
    ReadCache,
    Scores,
    Top,
)

_ADD = lua("trending_add")
_READ = lua("trending_read")


class RedisTrending:
    """Trending shared by every node through Redis (see the module docstring)."""

    def __init__(
        self,
        redis: RedisClient,
        *,
        prefix: str,
        window: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._buckets = Buckets(window, clock)
        self.window = window
        self._cache = ReadCache(time.monotonic)
        self._ttl_ms = str(int((window + self._buckets.bucket_seconds) * 1000)).encode()

    def _key(self, scope: str, bucket: int | str) -> bytes:
        return f"{self._prefix}tr:{{{scope}}}:{bucket}".encode()

    async def add(self, scores: Scores) -> None:
        bucket = self._buckets.now()
        by_scope: dict[str, list[bytes]] = {}
        for (scope, video_id), score in scores.items():
            by_scope.setdefault(scope, []).extend((repr(score).encode(), video_id.encode()))
        head = [self._ttl_ms, str(KEEP).encode()]
        calls = [
            self._redis.script(_ADD, [self._key(scope, bucket)], [*head, *pairs[i : i + ADD_BATCH]])
            for scope, pairs in by_scope.items()
            for i in range(0, len(pairs), ADD_BATCH)
        ]
        async with asyncio.timeout(REDIS_TIMEOUT):
            await asyncio.gather(*calls)

    async def top(self, scope: str, limit: int) -> Top:
        cached = self._cache.get(scope)
        if cached is not None:
            return cached[:limit]
        keys = [self._key(scope, b) for b in self._buckets.live()]
        keys.append(self._key(scope, "sum"))  # the scratch key, deleted by the script
        try:
            async with asyncio.timeout(REDIS_TIMEOUT):
                flat = await self._redis.script(_READ, keys, [str(MAX_LIMIT).encode()])
        except RespError as exc:
            raise Unavailable(f"Redis refused the trending read: {exc}") from exc
        top = [(bytes(flat[i]).decode(), float(flat[i + 1])) for i in range(0, len(flat), 2)]
        top = [(video_id, score) for video_id, score in top if score > 0]
        self._cache.put(scope, top)
        return top[:limit]
