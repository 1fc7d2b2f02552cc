"""Who is told of what by push: offline users, as their preferences allow.

:class:`OfflineNotifier` decides, in one background task per node, who gets a push
notification of:

- a message stored in a ``dm:`` or ``group:`` channel: every member but the sender
  (``message``, collapsed per conversation: the channel is the key);
- a **mention** in it (``@username`` of a member, at most :data:`MENTIONS_PER_MESSAGE` names per
  message): the mentioned member gets a ``mention`` notification (key ``mention:{channel}``)
  **instead of** the message one, so a mention stands out of a busy group's collapsed count and
  one message never pings a member twice. With ``mention`` turned off they get the plain
  message one; with ``message`` off but ``mention`` on, only mentions;
- a new follower (``follow``, key ``follow:{user}``: "3 new followers");
- a comment on a video, to its owner unless they wrote it (``comment``, key
  ``comment:{video}``);
- the owner's video ready or rejected by the media pipeline or a review (``video_ready`` /
  ``video_rejected``, key ``video_ready:{video}`` / ``video_rejected:{video}``).

For each, the recipients with no live socket on any node (presence across nodes), with a
registered device (remembered for :data:`DEVICE_CACHE_SECONDS`) and whose preferences
(:mod:`handlers.preferences`, remembered for :data:`PREFERENCE_CACHE_SECONDS`) allow it are
written to the store's push outbox (:class:`storage.push.NotificationStore`), where each folds
into the user's pending notification of the same key, if there is one: one notification with a
count and the latest sender and preview. The gateway's drainer (``gateway.push``) sends what is
due, checking the preferences again.

A new notification is due ``delay`` seconds after its first event, so that a burst is one
notification, or at the end of the recipient's quiet hours when they are in them (held, still
collapsing). A recipient with ``max_pending`` notifications pending already gets none for
another key (counted in :attr:`NotifyStats.refused`).

Bound and policy: the calling paths only queue (:meth:`OfflineNotifier.message`,
:meth:`~OfflineNotifier.follow`, :meth:`~OfflineNotifier.comment`,
:meth:`~OfflineNotifier.video`; no await); at most ``capacity`` events wait per node, and one
more is dropped (the newest, counted in :attr:`NotifyStats.dropped`): its recipients still see
it when they open the app, and the next event of the key notifies them. What waits here is in
memory: a node that dies loses the decisions it had not written (at most ``capacity``); once
written, a notification is in the store and any node sends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import orjson

from handlers.base import PresenceView
from handlers.cache import TtlCache
from handlers.channels import Kind, parse_channel
from handlers.errors import OpError
from handlers.preferences import allows, held_until
from storage.base import Store
from storage.push import PushPreferences

log = logging.getLogger(__name__)

DEVICE_CACHE_SECONDS = 5.0
"""How long a node remembers whether a user has a device (a device registered on another node
within this time may miss a notification: its app is open then, most likely)."""
PREFERENCE_CACHE_SECONDS = 5.0
"""How long the decider remembers a user's preferences (the drainer reads them fresh)."""
PREVIEW_CHARS = 100
"""Characters of a message's ``text`` a notification carries (what a lock screen shows)."""
MENTIONS_PER_MESSAGE = 20
"""Distinct ``@names`` of one message looked up (the first ones; the rest mention no one)."""
SYSTEM = "system"
"""The sender of notifications no user sent (a video ready or rejected)."""
_MENTION = re.compile(r"(?<![\w@.])@([A-Za-z0-9_.]{3,32})")

MESSAGE = "message"
MENTION = "mention"
FOLLOW = "follow"
COMMENT = "comment"
VIDEO_READY = "video_ready"
VIDEO_REJECTED = "video_rejected"
_PREFIXED = (MENTION, FOLLOW, COMMENT, VIDEO_READY, VIDEO_REJECTED)


def kind_of(key: str) -> str:
    """The kind of a notification from its key: ``dm:…``/``group:…`` are messages, the others
    start with their kind (``mention:group:…``, ``follow:{user}``, ``comment:{video}``, …)."""
    prefix = key.split(":", 1)[0]
    return prefix if prefix in _PREFIXED else MESSAGE


def preference_kind(kind: str) -> str:
    """The switch (:data:`storage.push.PUSH_KINDS`) that turns ``kind`` off."""
    return "video" if kind in (VIDEO_READY, VIDEO_REJECTED) else kind


def muted_by(key: str) -> str | None:
    """The conversation whose mute silences the notification; None: no mute does."""
    kind = kind_of(key)
    if kind == MESSAGE:
        return key
    if kind == MENTION:
        return key.removeprefix("mention:")
    return None


def wanted(preferences: PushPreferences, key: str, now: int) -> bool:
    """Whether the user's preferences let a notification of ``key`` through at ``now``."""
    return allows(preferences, preference_kind(kind_of(key)), muted_by(key), now)


def shorten(text: str) -> str:
    """Whitespace collapsed, at most :data:`PREVIEW_CHARS` characters."""
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def _text_of(data: bytes) -> str:
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return ""
    text = body.get("text") if isinstance(body, dict) else None
    return text if isinstance(text, str) else ""


def preview_of(data: bytes) -> str:
    """The start of a message body's ``text`` ("" when it has none)."""
    return shorten(_text_of(data))


def mentioned_names(text: str) -> list[str]:
    """The distinct ``@names`` of a text, in order, lowercased, at most
    :data:`MENTIONS_PER_MESSAGE` (a name's trailing dots are punctuation)."""
    names: dict[str, None] = {}
    for match in _MENTION.finditer(text):
        name = match.group(1).rstrip(".").lower()
        if len(name) >= 3:
            names.setdefault(name, None)
        if len(names) >= MENTIONS_PER_MESSAGE:
            break
    return list(names)


@dataclass(slots=True)
class NotifyStats:
    """What this node decided, for metrics and tests."""

    messages: int = 0
    """Events taken for a decision (messages of DM and group channels, follows, comments,
    videos)."""
    decided: int = 0
    """Notifications written (made or folded into), one per recipient and event."""
    mentions: int = 0
    """Of them, mentions."""
    online: int = 0
    """Recipients skipped because they had a live socket."""
    no_device: int = 0
    """Offline recipients skipped because they have no device."""
    suppressed: int = 0
    """Recipients skipped because they turned the kind off or muted the conversation."""
    held: int = 0
    """Notifications written due at the end of their recipient's quiet hours."""
    refused: int = 0
    """Notifications refused because the recipient had ``max_pending`` pending."""
    dropped: int = 0
    """Events dropped because ``capacity`` waited already."""
    failed: int = 0
    """Decisions that failed (the store or presence down), logged."""


@dataclass(frozen=True, slots=True)
class _Pending:
    key: str
    """The channel of a message, else the notification's key."""
    sender: str
    offset: int
    data: bytes = b""
    """A message's body (its preview and mentions are read from it)."""
    recipients: tuple[str, ...] = ()
    """Who is told, for all but messages (whose recipients are the channel's members)."""
    preview: str = ""


class OfflineNotifier:
    """Decides push notifications, in one background task."""

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
        self._preferences: TtlCache[str, PushPreferences] = TtlCache(
            ttl=PREFERENCE_CACHE_SECONDS, size=100_000
        )
        self.stats = NotifyStats()

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def _queue_event(self, pending: _Pending) -> bool:
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            log.warning("push decisions full: an event of %s notifies no one", pending.key)
            return False
        self.stats.messages += 1
        return True

    def message(self, channel: str, sender: str, offset: int, data: bytes) -> bool:
        """Queue a stored message for a decision; False when it is not for push or dropped."""
        if not channel.startswith(("dm:", "group:")):
            return False
        return self._queue_event(_Pending(channel, sender, offset, data))

    def follow(self, follower: str, followee: str) -> bool:
        """Queue a new follow (``follower`` now follows ``followee``); False when dropped."""
        return self._queue_event(
            _Pending(f"{FOLLOW}:{followee}", follower, 0, recipients=(followee,))
        )

    def comment(self, owner: str, video_id: str, author: str, text: str) -> bool:
        """Queue a comment on ``owner``'s video; False when it is the owner's own or dropped."""
        if author == owner:
            return False
        return self._queue_event(
            _Pending(f"{COMMENT}:{video_id}", author, 0, recipients=(owner,), preview=shorten(text))
        )

    def video(self, owner: str, video_id: str, ready: bool, text: str) -> bool:
        """Queue the news of the owner's video ready (``text``: its title) or rejected
        (``text``: why); False when dropped."""
        kind = VIDEO_READY if ready else VIDEO_REJECTED
        return self._queue_event(
            _Pending(f"{kind}:{video_id}", SYSTEM, 0, recipients=(owner,), preview=shorten(text))
        )

    def preferences_changed(self, user_id: str) -> None:
        """Forget the user's preferences (changed through this node; others take at most
        :data:`PREFERENCE_CACHE_SECONDS` to see it)."""
        self._preferences.drop(user_id)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="push-decide")

    async def _run(self) -> None:
        while True:
            pending = await self._queue.get()
            try:
                await self._decide(pending)
            except Exception:
                self.stats.failed += 1
                log.exception("push decision for an event of %s failed", pending.key)
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
        return await self._decide(_Pending(channel, sender, offset, data))

    async def _decide(self, pending: _Pending) -> int:
        if pending.recipients:
            key = pending.key
            recipients = [user for user in pending.recipients if user != pending.sender]
            reachable = await self._reachable(recipients)
            return await self._write(reachable, lambda user: key, pending, pending.preview)
        channel = pending.key
        members = [user for user in await self._members(channel) if user != pending.sender]
        reachable = await self._reachable(members)
        if not reachable:
            return 0
        text = _text_of(pending.data)
        # Names are looked up only when someone can be told (no reads for online members).
        mentioned = await self._mentioned(text, set(reachable)) if "@" in text else set()
        mention_key = f"{MENTION}:{channel}"

        def key_of(user: str) -> str:
            return mention_key if user in mentioned else channel

        return await self._write(reachable, key_of, pending, shorten(text))

    async def _mentioned(self, text: str, members: set[str]) -> set[str]:
        names = mentioned_names(text)
        users = await asyncio.gather(*(self._store.get_user_by_username(n) for n in names))
        return {user.id for user in users if user is not None and user.id in members}

    async def _reachable(self, users: list[str]) -> list[str]:
        """The users with no live socket on any node and a device."""
        if not users:
            return []
        statuses = await self._presence.statuses(users)
        offline = [user for user in users if not (s := statuses.get(user)) or not s.online]
        self.stats.online += len(users) - len(offline)
        reachable = await self._with_devices(offline)
        self.stats.no_device += len(offline) - len(reachable)
        return reachable

    async def _write(
        self, reachable: list[str], key_of: Callable[[str], str], pending: _Pending, preview: str
    ) -> int:
        """Write one event's notification for each reachable user who wants it, under
        ``key_of(user)`` (a mention falls back to its message's key when mentions are off)."""
        if not reachable:
            return 0
        now = int(self._clock() * 1000)
        preferences = await self._preferences_of(reachable)
        groups: dict[tuple[str, int], list[str]] = {}
        for user in reachable:
            wants = preferences[user]
            key = key_of(user)
            wants_it = wanted(wants, key, now)
            if not wants_it and kind_of(key) == MENTION:
                key = key.removeprefix(f"{MENTION}:")  # mentions off: the message notifies
                wants_it = wanted(wants, key, now)
            if not wants_it:
                self.stats.suppressed += 1
                continue
            due = now + self._delay_ms
            quiet_end = held_until(wants, now)
            if quiet_end is not None and quiet_end > due:
                self.stats.held += 1
                due = quiet_end
            groups.setdefault((key, due), []).append(user)
        written = 0
        for (key, due), group in groups.items():
            refused = await self._store.add_notifications(
                group,
                key,
                pending.sender,
                preview,
                pending.offset,
                now=now,
                due_at=due,
                max_pending=self._max_pending,
            )
            self.stats.refused += len(refused)
            written += len(group) - len(refused)
            if kind_of(key) == MENTION:
                self.stats.mentions += len(group) - len(refused)
        self.stats.decided += written
        return written

    async def _preferences_of(self, users: list[str]) -> dict[str, PushPreferences]:
        return await _cached(self._preferences, users, self._store.get_push_preferences)

    async def _with_devices(self, users: list[str]) -> list[str]:
        """The users who have a device (no outbox write for those who cannot be reached)."""
        known = await _cached(self._has_device, users, self._has_devices)
        return [user for user in users if known[user]]

    async def _has_devices(self, user: str) -> bool:
        return bool(await self._store.list_devices(user))

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued event is decided; False after ``timeout``."""
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
            log.warning("push decisions: %d events left undecided at shutdown", self.waiting)
        task, self._task = self._task, None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


_V = TypeVar("_V")


async def _cached(
    cache: TtlCache[str, _V], users: list[str], load: Callable[[str], Awaitable[_V]]
) -> dict[str, _V]:
    """Each user's value from the node's short cache, else loaded (all misses at once) and
    remembered."""
    known: dict[str, _V] = {}
    unknown: list[str] = []
    for user in users:
        found, value = cache.lookup(user)
        if found and value is not None:
            known[user] = value
        else:
            unknown.append(user)
    loaded = await asyncio.gather(*(load(user) for user in unknown))
    for user, value in zip(unknown, loaded, strict=True):
        known[user] = value
        cache.put(user, value)
    return known
