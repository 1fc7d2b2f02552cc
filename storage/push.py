"""Devices that receive push notifications: the record and the :class:`DeviceStore` protocol.

:class:`storage.base.Store` includes :class:`DeviceStore`; both backends implement it, checked by
the contract suite. What it promises:

- **A device** is one push token of one platform (``apns``, ``fcm``) registered by one user.
  Registering the same (platform, token) again as the same user is the same device: its app
  version, locale and ``seen_at`` change, its id does not.
- **A token has one owner.** The same (platform, token) registered by another user moves to
  them (a phone signed into another account): it leaves the first user's list, so their
  notifications no longer reach a phone they left.
- **Bounded per user**: at most ``limit`` devices. Registering one more drops the devices
  registered least recently (smallest ``seen_at``), which are the ones most likely stale (apps
  register their token at every start); the registration says which it dropped.
- **The endpoint** is what the push provider calls the device (an SNS platform endpoint ARN),
  remembered after the first send (a new token is a new device, with no endpoint yet).

:class:`NotificationStore` is the push outbox: notifications decided and not yet sent, in the
store so that any node drains them and a node's crash loses none.

- **Collapsed per (user, conversation)**: one pending notification per pair. A message for a
  user who has one pending in the conversation folds into it (``count`` + 1, the latest sender,
  preview and offset; ``version`` + 1) instead of making another.
- **Bounded per user**: a new conversation's notification for a user who has ``max_pending``
  pending already is refused (the caller counts it). On DynamoDB the check and the write are
  two calls, so concurrent decisions for one user may pass it together: the bound holds give or
  take the decisions running at that moment.
- **Claimed with a lease**: :meth:`NotificationStore.claim_notifications` hands due ones to one
  caller at a time until ``lease_until``; completing or releasing one needs its lease, so a
  caller whose lease ran out changes nothing. Messages folded in while a notification is
  claimed stay pending when it completes (what was sent is subtracted).
- **A cap per user and window**: :meth:`NotificationStore.take_push_slot` counts sends per user
  and minute, across nodes.

:class:`PreferenceStore` keeps what each user wants to be told of (:class:`PushPreferences`):
the kinds turned off, quiet hours, and muted conversations.

- **Settings are replaced whole** (:meth:`PreferenceStore.set_push_preferences`): the kinds off
  and the quiet hours are one record, the last write wins.
- **Mutes are one per (user, conversation)**, each with an optional end; muting again moves the
  end. **Bounded per user**: a new mute for a user with ``limit`` mutes (ended ones do not
  count: they are deleted by the next mute) is refused. On DynamoDB the count and the write are
  two calls, so concurrent mutes of one user may pass the bound together.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

PLATFORMS = ("apns", "fcm")
PUSH_KINDS = ("message", "mention", "follow", "comment", "video")
"""What a user may turn off, one switch each (``video``: their video ready or rejected)."""


def token_key(platform: str, token: str) -> str:
    """A fixed-size key of one (platform, token): what the store indexes tokens by."""
    return hashlib.sha256(f"{platform}:{token}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    """A time-sortable id the store made (:mod:`storage.ids`)."""
    user_id: str
    platform: str
    token: str
    app_version: str
    locale: str
    created_at: int
    """Milliseconds since the epoch of the first registration."""
    seen_at: int
    """Milliseconds since the epoch of the last registration."""
    endpoint: str | None = None
    """The provider's name of the device (an SNS endpoint ARN), once a send made one."""


@dataclass(frozen=True, slots=True)
class DeviceRegistration:
    """What :meth:`DeviceStore.register_device` did."""

    device: Device
    created: bool
    """False when the user had registered this token already (the same device)."""
    dropped: tuple[str, ...] = ()
    """Ids of the user's devices dropped to stay within the bound."""


class DeviceStore(Protocol):
    async def register_device(
        self,
        user_id: str,
        platform: str,
        token: str,
        app_version: str,
        locale: str,
        *,
        limit: int,
    ) -> DeviceRegistration:
        """Register (or refresh) the user's device with this token; keep at most ``limit``."""
        ...

    async def list_devices(self, user_id: str) -> list[Device]:
        """The user's devices, oldest registration (``created_at``) first."""
        ...

    async def delete_device(self, user_id: str, device_id: str) -> bool:
        """Remove the user's device; False when the user has no such device."""
        ...

    async def set_device_endpoint(self, user_id: str, device_id: str, endpoint: str) -> bool:
        """Remember the provider's endpoint of the device; False when it is gone."""
        ...


@dataclass(frozen=True, slots=True)
class Notification:
    """One pending notification: the messages of one conversation a user has not been told of."""

    user_id: str
    conversation: str
    """The channel (``dm:…`` or ``group:…``)."""
    count: int
    """Messages folded into it."""
    sender: str
    """Who sent the latest of them."""
    preview: str
    """The start of the latest message's text ("" when it has none)."""
    last_offset: int
    first_at: int
    """Milliseconds since the epoch when its first message was folded in."""
    due_at: int
    """Milliseconds since the epoch from when it may be claimed."""
    version: int
    """Grows with every message folded in."""
    attempts: int = 0
    """Sends that failed on every device."""
    lease: str | None = None
    """The claim's token, on a claimed notification."""


class NotificationStore(Protocol):
    async def add_notifications(
        self,
        users: list[str],
        conversation: str,
        sender: str,
        preview: str,
        offset: int,
        *,
        now: int,
        due_at: int,
        max_pending: int,
    ) -> list[str]:
        """Fold one message into each user's pending notification of the conversation, or make
        one due at ``due_at``; return the users refused because they have ``max_pending``."""
        ...

    async def claim_notifications(
        self, *, now: int, lease_until: int, limit: int
    ) -> list[Notification]:
        """Lease up to ``limit`` notifications due at ``now`` and not leased (or whose lease
        ended) until ``lease_until``; each carries its lease."""
        ...

    async def complete_notification(self, notification: Notification, *, due_at: int) -> bool:
        """Done with a claimed notification (sent, or given up): delete it; when messages were
        folded in since the claim, keep them pending instead (``count`` less what was claimed,
        due at ``due_at``). False when the lease was lost."""
        ...

    async def release_notification(
        self, notification: Notification, *, due_at: int, failed: bool
    ) -> bool:
        """Give a claimed notification back, due at ``due_at``; ``failed`` counts an attempt.
        False when the lease was lost."""
        ...

    async def pending_notifications(self, user_id: str) -> list[Notification]:
        """The user's pending notifications, claimed or not, in conversation order."""
        ...

    async def take_push_slot(self, user_id: str, window: int, cap: int) -> bool:
        """Count one send to the user in ``window`` (a number: the minute); False, counting
        nothing, when ``cap`` were counted in it already."""
        ...


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window of local time in which notifications wait (``start`` == ``end`` never)."""

    start: int
    """Minutes after local midnight (0 to 1439) when it starts."""
    end: int
    """Minutes after local midnight when it ends; before ``start``: it crosses midnight."""
    zone: str
    """An IANA time zone (``Europe/Paris``) or a fixed offset from UTC (``+05:30``)."""


@dataclass(frozen=True, slots=True)
class Mute:
    conversation: str
    """The channel muted (``dm:…`` or ``group:…``)."""
    until: int | None
    """Milliseconds since the epoch when it ends; None: until unmuted."""


@dataclass(frozen=True, slots=True)
class PushPreferences:
    """What a user wants to be told of by push; the default: everything, at any time."""

    kinds_off: frozenset[str] = frozenset()
    """Kinds (:data:`PUSH_KINDS`) the user turned off."""
    quiet: QuietHours | None = None
    mutes: tuple[Mute, ...] = ()
    """In conversation order; ended ones may still be listed (until the next mute)."""


class PreferenceStore(Protocol):
    async def get_push_preferences(self, user_id: str) -> PushPreferences:
        """The user's preferences (the default record when they never set any)."""
        ...

    async def set_push_preferences(
        self, user_id: str, *, kinds_off: frozenset[str], quiet: QuietHours | None
    ) -> None:
        """Replace the user's kinds off and quiet hours (their mutes stay)."""
        ...

    async def mute_conversation(
        self, user_id: str, conversation: str, until: int | None, *, now: int, limit: int
    ) -> bool:
        """Mute the conversation until ``until`` (None: for good), or move an existing mute's
        end; mutes ended at ``now`` are deleted first. False, changing nothing, when the user
        has ``limit`` mutes and this conversation is not one of them."""
        ...

    async def unmute_conversation(self, user_id: str, conversation: str) -> bool:
        """Remove the user's mute of the conversation; False when there was none."""
        ...
