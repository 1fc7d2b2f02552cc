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
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

PLATFORMS = ("apns", "fcm")


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
