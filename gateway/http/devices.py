"""REST routes of push devices; the same handlers as the ops (:mod:`handlers.devices`).

Nothing here is cached: a device list is short, per user and changes with every app start.
"""

from __future__ import annotations

from gateway.http.routes import BOOLEAN, COUNT, SIGNED_IN, STORE_ID, STRING, RouteTable, obj, ref
from handlers import devices

DEVICE_FIELDS = {
    "device_id": STRING,
    "platform": {"enum": ["apns", "fcm"]},
    "app_version": STRING,
    "locale": STRING,
    "created_at": COUNT,
    "seen_at": COUNT,
}
DEVICE_PARAM = {"device_id": {**STORE_ID, "description": "a device id (`invalid_params`: 400)"}}

ROUTES = RouteTable(
    {
        "Device": obj(DEVICE_FIELDS),
        "DeviceRegistered": obj(
            {
                **DEVICE_FIELDS,
                "duplicate": BOOLEAN,
                "dropped": {"type": "array", "items": STRING},
            }
        ),
        "DeviceList": obj(
            {"devices": {"type": "array", "items": ref("Device")}, "max_devices": COUNT}
        ),
        "DeviceDeleted": obj({"device_id": STRING, "deleted": BOOLEAN}),
    },
    tag="devices",
)

ROUTES.op(
    "POST",
    "/v1/devices",
    devices.register_device,
    "Register the caller's push token (`register_device`): 201 a new device, 200 the same "
    "token again; beyond MOOSIC_MAX_DEVICES the least recently registered are dropped",
    ok={200: "DeviceRegistered", 201: "DeviceRegistered"},
    errors=(*SIGNED_IN, 413),
    in_body=True,
)
ROUTES.op(
    "GET",
    "/v1/devices",
    devices.devices,
    "The caller's push devices, oldest first (`devices`)",
    ok={200: "DeviceList"},
    errors=SIGNED_IN,
)
ROUTES.op(
    "DELETE",
    "/v1/devices/{device_id}",
    devices.unregister_device,
    "Delete one of the caller's devices (`unregister_device`); another's or a gone one: 404",
    ok={200: "DeviceDeleted"},
    errors=(*SIGNED_IN, 404),
    path_params=DEVICE_PARAM,
)
