"""A ``Services`` for running ops without sockets: the real SQLite store, fakes for the rest.

Only what is not in-process is faked, and each fake records what it was asked, so a test can
check what an op pushed, counted or kicked:

- :class:`FakeFanout`: publishes are recorded (and remembered in the memory broker's real
  :class:`~gateway.fanout.broker_memory.RecentWindows`, so recovery reads a window as on a
  node); kicks are recorded; a long poll's watcher wakes on the next publish.
- :class:`FakePresence`: who is online is what the test says.
- :class:`FakeHotCounts`: each counted change, with running totals.
- :class:`FakeSession`: a live connection's subscriptions, pending until activated.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import orjson

from gateway.fanout.broker_memory import RecentWindows
from handlers.base import Identity, Recent, UserStatus
from storage.videos import VideoCounts


@dataclass(frozen=True, slots=True)
class Published:
    channel: str
    payload: bytes
    offset: int
    epoch: str

    @property
    def doc(self) -> dict[str, object]:
        loaded: dict[str, object] = orjson.loads(self.payload)
        return loaded


class _Waiter:
    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self.event.wait()
        except TimeoutError:
            return False
        self.event.clear()
        return True


class FakeFanout:
    def __init__(self) -> None:
        self.published: list[Published] = []
        self.kicks: list[tuple[str, str, str]] = []
        self.windows = RecentWindows(per_channel=256, channels=1000)
        self._waiters: dict[str, set[_Waiter]] = {}

    async def publish(
        self, channel: str, payload: bytes, offset: int = 0, epoch: str = "", stored_at: int = 0
    ) -> None:
        self.published.append(Published(channel, payload, offset, epoch))
        if offset:
            self.windows.add(channel, offset, epoch, payload)
        for waiter in self._waiters.get(channel, ()):
            waiter.event.set()

    def on(self, channel: str) -> list[dict[str, object]]:
        """The pushes published to ``channel``, decoded, oldest first."""
        return [p.doc for p in self.published if p.channel == channel]

    async def recent(self, channel: str, since: int, limit: int) -> Recent | None:
        return self.windows.get(channel, since, limit)

    async def kick(self, user_id: str, channel: str, reason: str) -> None:
        self.kicks.append((user_id, channel, reason))

    @asynccontextmanager
    async def watch(self, channel: str) -> AsyncIterator[_Waiter]:
        waiter = _Waiter()
        self._waiters.setdefault(channel, set()).add(waiter)
        try:
            yield waiter
        finally:
            self._waiters[channel].discard(waiter)


class FakePresence:
    def __init__(self) -> None:
        self.online: set[str] = set()
        self.channels: dict[str, list[str]] = {}

    async def statuses(self, users: list[str]) -> dict[str, UserStatus]:
        return {u: UserStatus(u in self.online, None if u in self.online else 0) for u in users}

    async def here(self, channel: str, limit: int) -> tuple[list[str], int]:
        users = self.channels.get(channel, [])
        return users[:limit], len(users)


class FakeHotCounts:
    def __init__(self) -> None:
        self.changes: list[tuple[str, int, int, int]] = []
        self._totals: dict[str, VideoCounts] = {}

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
        self.changes.append((video_id, likes, comments, shares))
        old = self._totals.get(video_id, VideoCounts(0, 0, 0, 0))
        self._totals[video_id] = VideoCounts(
            old.likes + likes,
            old.comments + comments,
            old.shares + shares,
            old.version + abs(likes) + abs(comments) + abs(shares) + abs(views) + abs(watch_ms),
            old.views + views,
            old.watch_ms + watch_ms,
        )

    async def totals(self, video_id: str) -> VideoCounts | None:
        return self._totals.get(video_id)


@dataclass
class FakeSession:
    """A connection's subscriptions; ``activated`` holds each (channel, replay, after, epoch)."""

    channels: set[str] = field(default_factory=set)
    activated: list[tuple[str, list[bytes], int, str]] = field(default_factory=list)
    identity: Identity | None = None

    @property
    def subscription_count(self) -> int:
        return len(self.channels)

    def is_subscribed(self, channel: str) -> bool:
        return channel in self.channels

    async def subscribe(self, channel: str) -> None:
        self.channels.add(channel)

    def subscribed(self, prefix: str) -> int:
        return sum(1 for c in self.channels if c.startswith(prefix))

    def activate(self, channel: str, replay: list[bytes], after: int, epoch: str) -> None:
        self.activated.append((channel, replay, after, epoch))

    def unsubscribe(self, channel: str) -> bool:
        if channel not in self.channels:
            return False
        self.channels.discard(channel)
        return True

    def renew(self, identity: Identity) -> None:
        self.identity = identity
