"""Hot counters' state in Redis: a hash per video, the marks of the next push and flush, locks.

Each video's counter is one hash (``likes``, ``comments``, ``shares``, ``views``, ``watch_ms``,
``version``) changed by the ``counts_bump`` script, which also marks the video for the next
push and the next flush. ``counts_push_marked`` takes a partition's window lock (``SET NX PX``
on Redis's clock) and, only if it got it, publishes the totals of every marked video from
inside Redis (or hands them back, on a cluster). The flush takes its own lock per partition,
reads the marked counters (``counts_read``) and unmarks a video only if its version did not move
meanwhile (``counts_unmark_flushed``).

The counters are split into the client's partitions (:mod:`storage.redis.slots`), a video in
the partition of its channel ``video:{id}`` (the one its presence hash is in, so the push
script reads the audience in its own slot): one partition on a single Redis.

The loops that drive this state (when to push, when to flush, seeding from the store, what to
do when Redis does not answer) are ``gateway/fanout/counts.py``'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from storage.redis.client import RedisClient, lua
from storage.redis.slots import partition_of, partition_prefix
from storage.videos import VideoCounts

VIDEO_PREFIX = "video:"

_BUMP = lua("counts_bump")
_PUSH = lua("counts_push_marked")
_READ = lua("counts_read")
_DONE = lua("counts_unmark_flushed")

FIELDS = (b"likes", b"comments", b"shares", b"views", b"watch_ms", b"version")
"""A video counter's hash fields, in the order the scripts read them."""


def counts_of(values: list[Any]) -> VideoCounts:
    """A counter's fields as read in :data:`FIELDS` order (missing ones: 0, an older hash)."""
    likes, comments, shares, views, watch_ms, version = (int(x or 0) for x in values)
    return VideoCounts(likes, comments, shares, version, views, watch_ms)


class Partition:
    """The keys of one partition of the hot counters (``base`` carries its hash tag)."""

    __slots__ = ("counter", "flush", "flush_lock", "push", "push_lock", "viewers")

    def __init__(self, base: str, viewers: bytes) -> None:
        self.counter = (base + "v:").encode()
        """The start of each video's counter hash."""
        self.push = (base + "push").encode()
        self.flush = (base + "flush").encode()
        self.push_lock = (base + "pushlock").encode()
        self.flush_lock = (base + "flushlock").encode()
        self.viewers = viewers
        """The start of the presence hash of this partition's video channels."""


class RedisCounters:
    """The counters, marks and locks of every partition; each call one Redis round trip (or
    one per batch), bounded by ``timeout``. Failures are the caller's to handle."""

    def __init__(
        self,
        redis: RedisClient,
        *,
        prefix: str,
        viewers_prefix: Callable[[int], bytes],
        envelope_head: bytes,
        ttl: float,
        window: float,
        flush_interval: float,
        timeout: float,
    ) -> None:
        """``envelope_head``: what precedes a push's payload on pub/sub (the broker's frame
        head for an ephemeral event that every node delivers)."""
        self._redis = redis
        parts = max(1, redis.partitions)
        self.partitions = [
            Partition(partition_prefix(prefix + "hc:", i, parts), viewers_prefix(i))
            for i in range(parts)
        ]
        self.hands_back = redis.cluster
        """On a cluster the push script hands its pushes back (a video's pub/sub channel is in
        the channel's slot, not the partition's) and the node publishes them."""
        self._channel_prefix = prefix.encode()
        self._envelope_head = envelope_head
        self._node = redis.node_id
        self._ttl_ms = str(int(ttl * 1000)).encode()
        self._window_ms = str(max(1, int(window * 1000))).encode()
        self._flush_ms = str(max(1, int(flush_interval * 1000))).encode()
        self._timeout = timeout

    def _partition(self, video_id: str) -> Partition:
        return self.partitions[partition_of(VIDEO_PREFIX + video_id, len(self.partitions))]

    async def _script(self, script: bytes, keys: list[bytes], args: list[bytes]) -> Any:
        async with asyncio.timeout(self._timeout):
            return await self._redis.script(script, keys, args)

    async def bump(
        self, video_id: str, deltas: tuple[int, ...], seed: tuple[int, ...] | None = None
    ) -> bool:
        """Add ``deltas`` (likes, comments, shares, views, watch_ms) and mark the video; False
        when it has no counter yet and no ``seed`` (its totals and version) was given. Only a
        missing counter is seeded, so concurrent seeders count every change once."""
        part = self._partition(video_id)
        keys = [part.counter + video_id.encode(), part.push, part.flush]
        args = [*(str(v).encode() for v in deltas), self._ttl_ms, video_id.encode()]
        if seed is not None:
            args += [str(v).encode() for v in seed]
        return await self._script(_BUMP, keys, args) is not None

    async def read(self, video_id: str) -> VideoCounts | None:
        """The video's totals now (None: no counter)."""
        counter = self._partition(video_id).counter + video_id.encode()
        async with asyncio.timeout(self._timeout):
            found = await self._redis.call(b"HMGET", counter, *FIELDS)
        if not found or found[0] is None:
            return None
        return counts_of(found)

    async def push_marked(self, part: Partition, batch: int) -> int | list[tuple[str, bytes]]:
        """Push up to ``batch`` marked videos' totals if this node takes the partition's window:
        how many were published, or on a cluster the (video, payload) pairs to publish (empty:
        another node holds the window)."""
        args = [
            self._window_ms,
            self._node,
            str(batch).encode(),
            part.counter,
            part.viewers,
            self._channel_prefix,
            self._envelope_head,
        ]
        if not self.hands_back:
            return max(0, int(await self._script(_PUSH, [part.push, part.push_lock], args)))
        found = await self._script(_PUSH, [part.push, part.push_lock], [*args, b"return"])
        if not isinstance(found, list):
            return []  # another node holds this window
        return [(bytes(found[i]).decode(), bytes(found[i + 1])) for i in range(0, len(found), 2)]

    async def lock_flush(self, part: Partition) -> bool:
        """Take the partition's flush for this interval (False: another node has it)."""
        async with asyncio.timeout(self._timeout):
            locked = await self._redis.call(
                b"SET", part.flush_lock, self._node, b"NX", b"PX", self._flush_ms
            )
        return locked is not None

    async def marked(self, part: Partition, batch: int) -> AsyncIterator[list[bytes]]:
        """The videos marked for the flush, about ``batch`` at a time (SSCAN)."""
        cursor = b"0"
        while True:
            async with asyncio.timeout(self._timeout):
                cursor, members = await self._redis.call(
                    b"SSCAN", part.flush, cursor, b"COUNT", str(batch).encode()
                )
            if members:
                yield [bytes(m) for m in members]
            if cursor in (b"0", 0):
                return

    async def read_marked(self, part: Partition, members: list[bytes]) -> dict[str, VideoCounts]:
        """The totals of marked videos that still have a counter."""
        found = await self._script(_READ, [part.flush], [part.counter, *members])
        step = 1 + len(FIELDS)
        return {
            bytes(found[i]).decode(): counts_of(found[i + 1 : i + step])
            for i in range(0, len(found), step)
        }

    async def unmark(
        self, part: Partition, members: list[bytes], written: dict[str, VideoCounts]
    ) -> None:
        """Unmark the videos whose ``written`` version is still theirs, and those of ``members``
        with no counter any more (nothing left to write)."""
        done: list[bytes] = [part.counter]
        for video_id, counts in written.items():
            done += [video_id.encode(), str(counts.version).encode()]
        for member in members:
            if member.decode() not in written:
                done += [member, b"-1"]
        await self._script(_DONE, [part.flush], done)
