"""The push outbox's drainer: any node claims due notifications from the store and sends them.

Every node runs one :class:`Drainer`. Each round it claims up to ``batch`` due notifications
(:meth:`storage.push.NotificationStore.claim_notifications`) under a lease of ``lease`` seconds,
handles them concurrently, and polls again at once when the batch was full, else after
``poll`` seconds. A claimed notification is, in order:

1. **given up** when older than ``max_age`` (from its first event, or from the end of the quiet
   hours it waited through; nobody wants a day-old ping);
2. **completed unsent** when its user's preferences (read fresh, one read per user and round)
   no longer want it (the kind turned off or the conversation muted since the decision);
3. **held to the end of quiet hours** when its user is in them: released, due then, still
   folding events in;
4. **completed unsent** when its user has a live socket on some node now (they came back since
   the decision and see the messages in the app) or has no device;
5. **held** when its user was sent ``per_minute`` notifications this minute (across nodes,
   :meth:`~storage.push.NotificationStore.take_push_slot`): released, due at the next minute,
   still folding messages in;
6. **sent** to each of the user's devices at once (one device's error does not stop the
   others). A device send that ``FAILED`` is tried ``DEVICE_TRIES`` times in all, after
   ``DEVICE_BACKOFF`` seconds doubled each time; a ``GONE`` device is deleted. One device sent
   completes the notification (messages folded in meanwhile stay pending, due after ``delay``).
   Every device failing releases it, due after ``retry_backoff`` doubled per failed attempt
   (at most ``MAX_RETRY_DELAY``), and after ``retries`` such attempts it is given up.

**None twice**: a notification is leased to one node at a time and only its lease completes it.
A node killed with notifications claimed leaves them to be claimed again once the lease ends;
one it was sending when it died may have reached the provider already, and is sent again then
(the one window where a notification can arrive twice). The lease must exceed the longest
handling: ``DEVICE_TRIES`` sends of ``send_timeout`` each and their backoff (the default 60 s
lease against about 16 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.push.sink import Delivery, Push, PushSink, Verdict
from handlers.notify import (
    COMMENT,
    FOLLOW,
    MENTION,
    SYSTEM,
    VIDEO_READY,
    VIDEO_REJECTED,
    kind_of,
    wanted,
)
from handlers.ports import PresenceView
from handlers.preferences import held_until, last_quiet_end
from storage.base import Store
from storage.push import Device, Notification, PushPreferences

log = logging.getLogger(__name__)

DEVICE_TRIES = 3
DEVICE_BACKOFF = 0.2
MAX_RETRY_DELAY = 300.0


@dataclass(slots=True)
class DrainStats:
    """What this node's drainer did, for metrics and tests."""

    claimed: int = 0
    sent: int = 0
    """Notifications sent to at least one device."""
    device_sends: int = 0
    """Sends that reached a device (one notification to three devices: three)."""
    device_failures: int = 0
    """Device sends that failed (each try)."""
    devices_dropped: int = 0
    """Devices deleted because the provider called their token dead."""
    no_device: int = 0
    online: int = 0
    """Notifications completed unsent because their user was online again when claimed."""
    capped: int = 0
    """Notifications held to the next minute by the per-user cap."""
    retried: int = 0
    """Notifications released after every device failed, to be tried again."""
    failed: int = 0
    """Notifications given up after ``retries`` failed attempts."""
    expired: int = 0
    """Notifications given up because they were older than ``max_age``."""
    suppressed: int = 0
    """Notifications completed unsent because their user turned the kind off or muted the
    conversation since the decision."""
    quiet: int = 0
    """Notifications held to the end of their user's quiet hours."""
    errors: int = 0
    """Rounds or notifications that stopped on an unexpected error (logged)."""


def _title(count: int, sender_name: str, conversation: str) -> str:
    """A notification's title, by its kind (``docs/notifications.md``, "What a notification
    says")."""
    kind = kind_of(conversation)
    if kind == FOLLOW:
        return f"{sender_name} followed you" if count == 1 else f"{count} new followers"
    if kind == COMMENT:
        if count == 1:
            return f"{sender_name} commented on your video"
        return f"{count} new comments on your video"
    if kind == VIDEO_READY:
        return "Your video is ready"
    if kind == VIDEO_REJECTED:
        return "Your video was rejected"
    channel = conversation.removeprefix(f"{MENTION}:")
    place = "a group" if channel.startswith("group:") else None
    if kind == MENTION:
        if count == 1:
            return f"{sender_name} mentioned you" + (f" in {place}" if place else "")
        return f"{count} mentions" + (f" in {place}" if place else f" from {sender_name}")
    if count == 1:
        return f"{sender_name}" if place is None else f"{sender_name} in {place}"
    return f"{count} new messages" + (f" in {place}" if place else f" from {sender_name}")


class Drainer:
    """Claims due notifications from the store and sends them through ``sink``."""

    def __init__(
        self,
        store: Store,
        sink: PushSink,
        *,
        presence: PresenceView | None = None,
        batch: int = 50,
        poll: float = 0.5,
        lease: float = 60.0,
        delay: float = 2.0,
        per_minute: int = 10,
        retries: int = 5,
        retry_backoff: float = 1.0,
        max_age: float = 3600.0,
        send_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.sink = sink
        self._presence = presence
        self._batch = batch
        self._poll = poll
        self._lease_ms = int(lease * 1000)
        self._delay_ms = int(delay * 1000)
        self._per_minute = per_minute
        self._retries = retries
        self._retry_backoff = retry_backoff
        self._max_age_ms = int(max_age * 1000)
        self._send_timeout = send_timeout
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.stats = DrainStats()

    def _now(self) -> int:
        return int(self._clock() * 1000)

    async def start(self) -> None:
        await self.sink.open()
        self._stopping.clear()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="push-drain")

    async def close(self) -> None:
        """Stop claiming; let the round under way finish (its sends are bounded), close the sink."""
        self._stopping.set()
        if self._task is not None:
            task, self._task = self._task, None
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.sink.close()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            claimed = 0
            try:
                claimed = await self.drain_once()
            except Exception:
                self.stats.errors += 1
                log.exception("push outbox round failed")
            if claimed < self._batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._poll)

    async def drain_once(self) -> int:
        """Claim one batch and handle it; return how many were claimed."""
        now = self._now()
        claimed = await self._store.claim_notifications(
            now=now, lease_until=now + self._lease_ms, limit=self._batch
        )
        self.stats.claimed += len(claimed)
        online: set[str] = set()
        users = list({n.user_id: None for n in claimed})
        if claimed and self._presence is not None:
            statuses = await self._presence.statuses(users)
            online = {user for user, status in statuses.items() if status.online}
        read = await asyncio.gather(*(self._store.get_push_preferences(u) for u in users))
        preferences = dict(zip(users, read, strict=True))
        await asyncio.gather(
            *(self._guarded(n, n.user_id in online, preferences[n.user_id]) for n in claimed)
        )
        return len(claimed)

    async def _guarded(
        self, notification: Notification, online: bool, preferences: PushPreferences
    ) -> None:
        try:
            await self._handle(notification, online, preferences)
        except Exception:
            # Left leased: claimed again when the lease ends.
            self.stats.errors += 1
            log.exception("push notification for a user failed; retried after its lease")

    async def _handle(self, n: Notification, online: bool, preferences: PushPreferences) -> None:
        store = self._store
        now = self._now()
        since = n.first_at
        if preferences.quiet is not None:
            # Held through quiet hours: it ages from their end, not from its first event.
            since = max(since, last_quiet_end(preferences.quiet, now))
        if now - since > self._max_age_ms:
            self.stats.expired += 1
            await store.complete_notification(n, due_at=now + self._delay_ms)
            return
        if not wanted(preferences, n.conversation, now):
            self.stats.suppressed += 1
            await store.complete_notification(n, due_at=now + self._delay_ms)
            return
        quiet_end = held_until(preferences, now)
        if quiet_end is not None:
            self.stats.quiet += 1
            await store.release_notification(n, due_at=quiet_end, failed=False)
            return
        if online:
            self.stats.online += 1
            await store.complete_notification(n, due_at=now + self._delay_ms)
            return
        devices = await store.list_devices(n.user_id)
        if not devices:
            self.stats.no_device += 1
            await store.complete_notification(n, due_at=now + self._delay_ms)
            return
        minute = now // 60_000
        if not await store.take_push_slot(n.user_id, minute, self._per_minute):
            self.stats.capped += 1
            await store.release_notification(n, due_at=(minute + 1) * 60_000, failed=False)
            return
        push = await self._render(n)
        verdicts = await asyncio.gather(*(self._send(device, push) for device in devices))
        now = self._now()
        if Verdict.SENT in verdicts or all(v is Verdict.GONE for v in verdicts):
            if Verdict.SENT in verdicts:
                self.stats.sent += 1
            else:
                self.stats.no_device += 1
            await store.complete_notification(n, due_at=now + self._delay_ms)
            return
        if n.attempts + 1 >= self._retries:
            self.stats.failed += 1
            log.warning("push notification given up after %d attempts", n.attempts + 1)
            await store.complete_notification(n, due_at=now + self._delay_ms)
            return
        self.stats.retried += 1
        delay = min(MAX_RETRY_DELAY, self._retry_backoff * 2**n.attempts)
        await store.release_notification(n, due_at=now + int(delay * 1000), failed=True)

    async def _render(self, n: Notification) -> Push:
        name = ""
        if n.sender != SYSTEM:
            user = await self._store.get_user(n.sender)
            name = user.username if user is not None else n.sender
        return Push(
            kind=kind_of(n.conversation),
            user_id=n.user_id,
            conversation=n.conversation,
            count=n.count,
            sender=n.sender,
            sender_name=name,
            title=_title(n.count, name, n.conversation),
            body=n.preview,
            last_offset=n.last_offset,
        )

    async def _send(self, device: Device, push: Push) -> Verdict:
        delivery = Delivery(Verdict.FAILED)
        for attempt in range(DEVICE_TRIES):
            if attempt:
                # Full jitter, so devices that failed together do not retry together.
                await asyncio.sleep(random.uniform(0, DEVICE_BACKOFF * 2 ** (attempt - 1)))
            try:
                async with asyncio.timeout(self._send_timeout):
                    delivery = await self.sink.send(device, push)
            except TimeoutError:
                delivery = Delivery(Verdict.FAILED, detail="timed out")
            if delivery.endpoint is not None and delivery.endpoint != device.endpoint:
                await self._store.set_device_endpoint(device.user_id, device.id, delivery.endpoint)
                device = dataclasses.replace(device, endpoint=delivery.endpoint)
            if delivery.verdict is Verdict.SENT:
                self.stats.device_sends += 1
                return Verdict.SENT
            if delivery.verdict is Verdict.GONE:
                self.stats.devices_dropped += 1
                log.info("push device %s dropped: %s", device.id, delivery.detail)
                await self._store.delete_device(device.user_id, device.id)
                return Verdict.GONE
            self.stats.device_failures += 1
            log.warning("push to device %s failed: %s", device.id, delivery.detail)
        return Verdict.FAILED
