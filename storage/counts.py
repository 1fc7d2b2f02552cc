"""Hot counters' state in this process: the in-process twin of ``storage/redis/counts.py``.

One node without Redis keeps each video's totals and version in a dict, seeded from the store on
the video's first change, and the set of videos changed since their last write to the store.
The loops that push and flush (and what to do when the store does not answer) are
``gateway/fanout/counts.py``'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from storage.videos import VideoCounts


@dataclass(slots=True)
class Entry:
    """A video's totals and version, and when they last changed."""

    likes: int
    comments: int
    shares: int
    views: int
    watch_ms: int
    version: int
    changed_at: float

    def counts(self) -> VideoCounts:
        return VideoCounts(
            self.likes, self.comments, self.shares, self.version, self.views, self.watch_ms
        )


class LocalCounters:
    """The counters of one node. Bounded by the videos changed within the idle time: a video
    flushed and unchanged for longer is forgotten (:meth:`forget_idle`), and seeded again from
    the store on its next change."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, Entry] = {}
        self._unflushed: set[str] = set()

    def get(self, video_id: str) -> Entry | None:
        return self._entries.get(video_id)

    def seed(self, video_id: str, counts: VideoCounts) -> Entry:
        """The video's counter, made from stored ``counts`` unless another caller made it."""
        entry = self._entries.get(video_id)
        if entry is None:
            c = counts
            entry = Entry(
                c.likes, c.comments, c.shares, c.views, c.watch_ms, c.version, self._clock()
            )
            self._entries[video_id] = entry
        return entry

    def bump(self, video_id: str, entry: Entry, deltas: tuple[int, int, int, int, int]) -> None:
        """Add (likes, comments, shares, views, watch_ms); a new version, to be flushed."""
        likes, comments, shares, views, watch_ms = deltas
        entry.likes += likes
        entry.comments += comments
        entry.shares += shares
        entry.views += views
        entry.watch_ms += watch_ms
        entry.version += 1
        entry.changed_at = self._clock()
        self._unflushed.add(video_id)

    def unflushed(self) -> list[str]:
        """The videos changed since their last write to the store."""
        return list(self._unflushed)

    def totals(self, video_id: str) -> VideoCounts | None:
        entry = self._entries.get(video_id)
        return None if entry is None else entry.counts()

    def flushed(self, video_id: str, version: int) -> None:
        """``version`` of the video was written: done, unless it changed meanwhile."""
        entry = self._entries.get(video_id)
        if entry is None or entry.version == version:
            self._unflushed.discard(video_id)

    def forget_idle(self, seconds: float) -> None:
        """Drop the videos flushed and unchanged for ``seconds``."""
        cutoff = self._clock() - seconds
        for video_id in [
            v
            for v, e in self._entries.items()
            if e.changed_at < cutoff and v not in self._unflushed
        ]:
            del self._entries[video_id]
