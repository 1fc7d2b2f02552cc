"""Who is told of a message by push: offline members of DM and group conversations.

When a message is stored in a ``dm:`` or ``group:`` channel, :class:`OfflineNotifier` decides,
in the background, which members get a push notification: every member but the sender with no
live socket on any node (presence across nodes). Each decision is written to the store's push
outbox (:class:`storage.push.NotificationStore`), where it folds into the member's pending
notification of that conversation, if there is one: one notification with a count and the
latest sender and preview, not one per message. The gateway's drainer (``gateway.push``) sends
what is due. Offline members without a registered device are skipped (whether a user has one is
remembered for :data:`DEVICE_CACHE_SECONDS`), so the outbox holds only who can be reached.

A new notification is due ``delay`` seconds after its first message, so that a burst of
messages is one notification; its later messages fold in until it is claimed. A member with
``max_pending`` conversations pending already gets no notification for another (counted in
:attr:`NotifyStats.refused`).

Bound and policy: the publish path only queues the message (:meth:`OfflineNotifier.message`,
no await); at most ``capacity`` messages wait per node, and one more is dropped (the newest,
counted in :attr:`NotifyStats.dropped`): its members still see the message when they open the
app, and the next message of the conversation notifies them. What waits here is in memory: a
node that dies loses the decisions it had not written (at most ``capacity``); once written, a
notification is in the store and any node sends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from handlers.base import PresenceView
from handlers.cache import TtlCache
from handlers.channels import Kind, parse_channel
from handlers.errors import OpError
from storage.base import Store

log = logging.getLogger(__name__)

DEVICE_CACHE_SECONDS = 5.0
"""How long a node remembers whether a user has a device (a device registered on another node
within this time may miss a notification: its app is open then, most likely)."""
PREVIEW_CHARS = 100
"""Characters of a message's ``text`` a notification carries (what a lock screen shows)."""


def preview_of(data: bytes) -> str:
    """The start of a message body's ``text`` ("" when it has none)."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return ""
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str):
        return ""
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


@dataclass(slots=True)
class NotifyStats:
    """What this node decided, for metrics and tests."""

    messages: int = 0
    """Messages of DM and group channels taken for a decision."""
    decided: int = 0
    """Notifications written (made or folded into), one per offline member and message."""
    online: int = 0
    """Members skipped because they had a live socket."""
    no_device: int = 0
    """Offline members skipped because they have no device."""
    refused: int = 0
    """Notifications refused because the member had ``max_pending`` pending."""
    dropped: int = 0
    """Messages dropped because ``capacity`` waited already."""
    failed: int = 0
    """Decisions that failed (the store or presence down), logged."""


@dataclass(frozen=True, slots=True)
class _Pending:
    channel: str
    sender: str
    offset: int
    data: bytes


class OfflineNotifier:
    """Decides the push notifications of DM and group messages, in one background task."""

    def __init__(
        self,
        store: Store,
        presence: PresenceView,
        *,
        delay: float = 2.0,
        max_pending: int = 50,
        max_group_members: int = 1024,
        capacity: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._presence = presence
        self._delay_ms = int(delay * 1000)
        self._max_pending = max_pending
        self._max_members = max_group_members
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=capacity)
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._has_device: TtlCache[str, bool] = TtlCache(ttl=DEVICE_CACHE_SECONDS, size=100_000)
        self.stats = NotifyStats()

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def message(self, channel: str, sender: str, offset: int, data: bytes) -> bool:
        """Queue a stored message for a decision; False when it is not for push or dropped."""
        if not channel.startswith(("dm:", "group:")):
            return False
        try:
            self._queue.put_nowait(_Pending(channel, sender, offset, data))
        except asyncio.QueueFull:
            self.stats.dropped += 1
            log.warning("push decisions full: a message of %s notifies no one", channel)
            return False
        self.stats.messages += 1
        return True

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="push-decide")

    async def _run(self) -> None:
        while True:
            pending = await self._queue.get()
            try:
                await self.decide(pending.channel, pending.sender, pending.offset, pending.data)
            except Exception:
                self.stats.failed += 1
                log.exception("push decision for a message of %s failed", pending.channel)
            finally:
                self._queue.task_done()

    async def _members(self, channel: str) -> list[str]:
        try:
            parsed = parse_channel(channel)
        except OpError:
            return []
        if parsed.kind is Kind.DM:
            return parsed.key.split(":")
        if parsed.kind is Kind.GROUP:
            return await self._store.list_members(parsed.key, limit=self._max_members)
        return []

    async def decide(self, channel: str, sender: str, offset: int, data: bytes) -> int:
        """Write the notifications of one message; return how many were written."""
        members = [user for user in await self._members(channel) if user != sender]
        if not members:
            return 0
        statuses = await self._presence.statuses(members)
        offline = [user for user in members if not (s := statuses.get(user)) or not s.online]
        self.stats.online += len(members) - len(offline)
        reachable = await self._with_devices(offline)
        self.stats.no_device += len(offline) - len(reachable)
        offline = reachable
        if not offline:
            return 0
        now = int(self._clock() * 1000)
        refused = await self._store.add_notifications(
            offline,
            channel,
            sender,
            preview_of(data),
            offset,
            now=now,
            due_at=now + self._delay_ms,
            max_pending=self._max_pending,
        )
        self.stats.refused += len(refused)
        self.stats.decided += len(offline) - len(refused)
        return len(offline) - len(refused)

    async def _with_devices(self, users: list[str]) -> list[str]:
        """The users who have a device (no outbox write for those who cannot be reached)."""
        known: dict[str, bool] = {}
        unknown: list[str] = []
        for user in users:
            found, has = self._has_device.lookup(user)
            if found:
                known[user] = bool(has)
            else:
                unknown.append(user)
        listed = await asyncio.gather(*(self._store.list_devices(user) for user in unknown))
        for user, devices in zip(unknown, listed, strict=True):
            known[user] = bool(devices)
            self._has_device.put(user, bool(devices))
        return [user for user in users if known[user]]

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued message is decided; False after ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                await self._queue.join()
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float) -> None:
        """Decide what is queued for up to ``timeout`` seconds, then stop."""
        if self._task is None:
            return
        if not await self.wait_idle(timeout):
            log.warning("push decisions: %d messages left undecided at shutdown", self.waiting)
        task, self._task = self._task, None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
