"""Who is online, who is in a channel, and the pushes when that changes.

The hub reports local transitions: a user's first connection on this node and their last one
leaving, a user's first subscription on this node to a channel and their last one leaving. A
backend turns them into global state and says when a transition is global too (first node /
last node); only then is a push published:

- ``{"op": "presence", "user", "online", "last_seen"}`` on the internal channel
  ``~presence:{user}``, which connections that asked for a contact's status are subscribed to;
- ``{"op": "join" | "leave", "channel", "user"}`` on ``dm:`` and ``group:`` channels.

The state is a backend's: ``storage/presence.py`` (``LocalPresence``, in this process: the
single-node default) or ``storage/redis/presence.py`` (``RedisPresence``), which keeps
counters in Redis, written by small Lua scripts; every node also keeps a liveness entry
(refreshed every ``refresh`` seconds, expiring after ``ttl``, scored with Redis TIME) and a
record of what it added. When a node dies, the first other node to notice its expired entry
removes everything that node had added and publishes the resulting offline and leave pushes, so
a crashed node leaves no ghosts for longer than ``ttl + refresh`` seconds.

A node that was only paused (a stopped process, a long GC pause, a stalled VM) comes back to
find itself reaped. Three rules keep its stale view from outvoting the live one:

- a script changes a counter only when it changed this node's own record entry (SADD/SREM
  returned 1), so a node can only take back what it added itself, once: its sockets that close
  after the pause change nothing for users it no longer holds in Redis;
- adds are refused while the node is not registered, and the reaper checks the node's score
  against Redis TIME inside its script, so a node that refreshed in the meantime is not reaped
  on a stale read;
- every heartbeat reports whether the node was registered and how big its record is; when it
  was not (or the sizes disagree with what the node holds on two heartbeats running), the node
  writes its record again from what it holds, in batches of ``RECONCILE_BATCH``, adding what is
  missing and removing what it no longer holds, and publishes the pushes that causes.
  Presence is whole again one refresh after the node resumes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

from handlers.messages import join_leave_message, presence_message
from handlers.presence import WATCH_PREFIX
from storage.errors import Unavailable
from storage.presence import Backend, UserStatus
from storage.redis.resp import ConnectionLost, RespError

log = logging.getLogger(__name__)
_T = TypeVar("_T")


def _now_ms() -> int:
    return int(time.time() * 1000)


def pushes_join_leave(channel: str) -> bool:
    """Join/leave pushes are for conversations; rooms and video audiences can be huge."""
    return channel.startswith(("dm:", "group:"))


Publish = Callable[[str, bytes], Awaitable[None]]


RECONCILE_BATCH = 500
"""Users or (channel, user) pairs per script call when a node writes its record again."""
_ERRORS = (Unavailable, ConnectionLost, RespError, OSError, TimeoutError)


class PresenceTracker:
    """Runs the backend off the hot path and publishes the pushes of global transitions.

    It also keeps what this node holds (its online users, its (channel, user) pairs) so that
    the shared record can be written again when it was lost or disagrees: after this node was
    reaped (a pause longer than the ttl: a stopped process, a long GC pause, a stalled VM),
    after Redis forgot everything, or after an update failed.
    """

    def __init__(
        self,
        backend: Backend,
        publish: Publish,
        *,
        refresh: float,
        audience: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.backend = backend
        self._publish = publish
        self._refresh = refresh
        self._audience = audience
        """Told when a user's first subscription to a channel began or their last one ended,
        on any node (video channels show their viewer count)."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._users: set[str] = set()
        self._pairs: set[tuple[str, str]] = set()
        self._suspect = False
        self._beat_lock = asyncio.Lock()
        self.reconciles = 0
        """How many times this node wrote its record again (logged; for tests and operators)."""

    def start(self) -> None:
        """Begin refreshing this node's liveness (:meth:`run`) in the background."""
        self._spawn(self.run())

    async def close(self) -> None:
        """Stop the refresh and the updates under way (the hub closes its tracker)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Called synchronously by the hub; the work happens in background tasks. Commands reach
    # Redis in the order these are called (each is one script call on a pipelined connection).

    def user_up(self, user: str) -> None:
        self._users.add(user)
        self._spawn(self._user_up(user))

    def user_down(self, user: str) -> None:
        self._users.discard(user)
        self._spawn(self._user_down(user))

    def joined(self, channel: str, user: str) -> None:
        self._pairs.add((channel, user))
        self._spawn(self._channel(channel, user, up=True))

    def left(self, channel: str, user: str) -> None:
        self._pairs.discard((channel, user))
        self._spawn(self._channel(channel, user, up=False))

    async def _user_up(self, user: str) -> None:
        if await self._guard(self.backend.user_up(user)):
            await self._status_push(user, UserStatus(True, None))

    async def _user_down(self, user: str) -> None:
        now = _now_ms()
        if await self._guard(self.backend.user_down(user, now)):
            await self._status_push(user, UserStatus(False, now))

    async def _channel(self, channel: str, user: str, *, up: bool) -> None:
        change = self.backend.channel_up if up else self.backend.channel_down
        if await self._guard(change(channel, user)):
            await self._channel_pushes([(channel, user)], up=up)

    async def _guard(self, call: Awaitable[bool]) -> bool:
        try:
            return await call
        except _ERRORS as exc:
            log.warning("presence update failed: %s", exc)
            return False

    async def _status_push(self, user: str, status: UserStatus) -> None:
        await self._publish(WATCH_PREFIX + user, presence_message(user, status))

    async def _join_leave_push(self, channel: str, user: str, *, up: bool) -> None:
        await self._publish(channel, join_leave_message(channel, user, up=up))

    async def resync(self) -> None:
        """After a Redis outage: refresh at once, writing the record again if it was lost."""
        await self._beat()

    async def _beat(self) -> None:
        async with self._beat_lock:
            try:
                beat = await self.backend.sweep()
            except _ERRORS as exc:
                log.warning("presence sweep failed: %s", exc)
                return
            now = _now_ms()
            for user in beat.offline:
                await self._status_push(user, UserStatus(False, now))
            await self._channel_pushes(beat.left, up=False)
            differs = beat.users >= 0 and (
                beat.users != len(self._users) or beat.pairs != len(self._pairs)
            )
            # A count can differ for a moment while updates are on their way; one that still
            # differs a refresh later is real. A node that was not registered holds nothing.
            if not beat.registered or (differs and self._suspect):
                self._suspect = False
                await self._reconcile(registered=beat.registered)
            else:
                self._suspect = differs

    async def _reconcile(self, *, registered: bool) -> None:
        """Make this node's shared record what this node holds: add what is missing, remove
        what it no longer holds, in batches; publish the transitions that causes."""
        try:
            users, pairs = await self.backend.recorded()
            add = [u for u in self._users if u not in users]
            remove = [u for u in users if u not in self._users]
            add_pairs = [m for m in self._pairs if m not in pairs]
            remove_pairs = [m for m in pairs if m not in self._pairs]
            if not (add or remove or add_pairs or remove_pairs):
                return  # a node starting, or updates that were on their way
            self.reconciles += 1
            log.warning(
                "presence record of this node %s: adding %d users and %d channel memberships,"
                " removing %d and %d",
                "was lost (paused longer than the ttl, or Redis forgot it)"
                if not registered
                else "disagreed with what it holds",
                len(add),
                len(add_pairs),
                len(remove),
                len(remove_pairs),
            )
            for batch in _batches(add):
                # Checked again at the moment of sending: what changed meanwhile is not undone.
                came = await self.backend.add_users([u for u in batch if u in self._users])
                if came is None:
                    return  # reaped again in the meantime: the next beat starts over
                for user in came:
                    await self._status_push(user, UserStatus(True, None))
            for batch in _batches(remove):
                now = _now_ms()
                gone = await self.backend.remove_users(
                    [u for u in batch if u not in self._users], now
                )
                for user in gone:
                    await self._status_push(user, UserStatus(False, now))
            for pair_batch in _batches(add_pairs):
                joined = await self.backend.add_pairs([m for m in pair_batch if m in self._pairs])
                if joined is None:
                    return
                await self._channel_pushes(joined, up=True)
            for pair_batch in _batches(remove_pairs):
                left = await self.backend.remove_pairs(
                    [m for m in pair_batch if m not in self._pairs]
                )
                await self._channel_pushes(left, up=False)
        except _ERRORS as exc:
            log.warning("presence reconcile failed (tried again on the next refresh): %s", exc)
            self._suspect = True

    async def _channel_pushes(self, pairs: list[tuple[str, str]], *, up: bool) -> None:
        for channel, user in pairs:
            if pushes_join_leave(channel):
                await self._join_leave_push(channel, user, up=up)
        audience = self._audience
        if audience is not None:
            for channel in dict.fromkeys(c for c, _ in pairs if not pushes_join_leave(c)):
                await audience(channel)

    async def run(self) -> None:
        """Refresh this node's liveness and clear what dead nodes left behind, forever."""
        while True:
            await self._beat()
            await asyncio.sleep(self._refresh)


def _batches(items: list[_T]) -> Iterator[list[_T]]:
    for start in range(0, len(items), RECONCILE_BATCH):
        yield items[start : start + RECONCILE_BATCH]
