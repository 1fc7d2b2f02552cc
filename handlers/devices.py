"""Push devices: the phones and browsers that receive a user's notifications.

Ops: ``register_device``, ``unregister_device``, ``devices``. REST routes call the same
functions (``POST /v1/devices``, ``DELETE /v1/devices/{device_id}``, ``GET /v1/devices``).

Rules:

- A device is one push token of one platform (``apns``, ``fcm``). Registering the same token
  again is the same device (``duplicate``: its app version, locale and ``seen_at`` are
  refreshed); apps register their token at every start.
- A token has one owner: the same token registered by another account moves to it.
- At most ``MOOSIC_MAX_DEVICES`` (20) devices per user: registering one more drops the ones
  registered least recently, and the answer names them (``dropped``). The newest registration is
  never refused: a user who reinstalls the app is never locked out of notifications.
- A user lists and deletes their own devices only; another user's device id is ``not_found``.
- The push provider's verdict that a token is dead drops its device (the sender's job:
  ``gateway.push``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from handlers.base import Context, Params, Result, operation
from handlers.errors import INVALID_PARAMS, NOT_FOUND, OpError
from storage import ids
from storage.push import Device

MAX_TOKEN = 1024
"""Characters of a push token (APNs: 64 hex digits; FCM registration tokens: about 160)."""

PushToken = Annotated[
    str, msgspec.Meta(min_length=1, max_length=MAX_TOKEN, pattern=r"^[\x21-\x7e]+$")
]
AppVersion = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[\x21-\x7e]+$")]
Locale = Annotated[
    str,
    msgspec.Meta(min_length=2, max_length=35, pattern=r"^[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8})*$"),
]
"""A BCP 47 language tag as apps report it (``en``, ``en-GB``, ``pt_BR``, ``zh-Hant-TW``)."""
DeviceId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class RegisterDeviceParams(Params, tag="register_device"):
    platform: Literal["apns", "fcm"]
    token: PushToken
    app_version: AppVersion
    locale: Locale


class UnregisterDeviceParams(Params, tag="unregister_device"):
    device_id: DeviceId


class DevicesParams(Params, tag="devices"):
    pass


def device_fields(device: Device) -> Result:
    """A device as clients see it (never the token: the app has it, no one else needs it)."""
    return {
        "device_id": device.id,
        "platform": device.platform,
        "app_version": device.app_version,
        "locale": device.locale,
        "created_at": device.created_at,
        "seen_at": device.seen_at,
    }


@operation(RegisterDeviceParams)
async def register_device(ctx: Context, params: RegisterDeviceParams) -> Result:
    """Register the caller's push token (again: the same device, refreshed)."""
    registration = await ctx.services.store.register_device(
        ctx.user_id,
        params.platform,
        params.token,
        params.app_version,
        params.locale,
        limit=ctx.services.limits.max_devices,
    )
    return {
        **device_fields(registration.device),
        "duplicate": not registration.created,
        "dropped": list(registration.dropped),
    }


@operation(UnregisterDeviceParams)
async def unregister_device(ctx: Context, params: UnregisterDeviceParams) -> Result:
    """Stop sending the caller's notifications to one of their devices."""
    if not ids.is_valid(params.device_id):
        raise OpError(INVALID_PARAMS, "device_id is a device id - at `$.device_id`")
    if not await ctx.services.store.delete_device(ctx.user_id, params.device_id):
        raise OpError(NOT_FOUND, f"you have no device {params.device_id}")
    return {"device_id": params.device_id, "deleted": True}


@operation(DevicesParams)
async def devices(ctx: Context, params: DevicesParams) -> Result:
    """The caller's devices, oldest registration first, and how many they may have."""
    listed = await ctx.services.store.list_devices(ctx.user_id)
    return {
        "devices": [device_fields(device) for device in listed],
        "max_devices": ctx.services.limits.max_devices,
    }
