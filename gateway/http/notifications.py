"""REST routes of push preferences and mutes; the same handlers as the ops
(:mod:`handlers.preferences`).

Nothing here is cached: the settings are per user and small, and change when the user says so.
"""

from __future__ import annotations

from gateway.http.rest import CHANNEL_PARAM
from gateway.http.routes import BOOLEAN, COUNT, SIGNED_IN, STRING, RouteTable, obj, ref
from handlers import preferences

NULLABLE_TIME = {"type": ["integer", "null"], "minimum": 0}
KINDS = {kind: BOOLEAN for kind in ("message", "mention", "follow", "comment", "video")}

ROUTES = RouteTable(
    {
        "QuietHours": obj({"start": STRING, "end": STRING, "timezone": STRING}),
        "Mute": obj({"channel": STRING, "until": NULLABLE_TIME}),
        "NotificationSettings": obj(
            {
                "kinds": obj(KINDS),
                "quiet_hours": {"anyOf": [ref("QuietHours"), {"type": "null"}]},
                "quiet_now": BOOLEAN,
                "mutes": {"type": "array", "items": ref("Mute")},
                "max_mutes": COUNT,
            }
        ),
        "Muted": obj({"channel": STRING, "muted": BOOLEAN, "until": NULLABLE_TIME}),
        "Unmuted": obj({"channel": STRING, "muted": BOOLEAN, "changed": BOOLEAN}),
    },
    tag="notifications",
)

ROUTES.op(
    "GET",
    "/v1/notifications/settings",
    preferences.notification_settings,
    "The caller's push preferences: kinds on or off, quiet hours, mutes in force "
    "(`notification_settings`)",
    ok={200: "NotificationSettings"},
    errors=SIGNED_IN,
)
ROUTES.op(
    "PUT",
    "/v1/notifications/settings",
    preferences.set_notification_settings,
    "Replace the caller's kinds and quiet hours (`set_notification_settings`): a kind left out "
    "is on, no `quiet_hours` is none; mutes stay",
    ok={200: "NotificationSettings"},
    errors=(*SIGNED_IN, 413),
    in_body=True,
)
ROUTES.op(
    "PUT",
    "/v1/notifications/mutes/{channel}",
    preferences.mute_conversation,
    "Mute one of the caller's conversations, for good or until `until` (`mute_conversation`); "
    "beyond MOOSIC_PUSH_MAX_MUTES: `limit_exceeded` (409)",
    ok={200: "Muted"},
    errors=(*SIGNED_IN, 403, 409, 413),
    path_params=CHANNEL_PARAM,
    in_body=True,
)
ROUTES.op(
    "DELETE",
    "/v1/notifications/mutes/{channel}",
    preferences.unmute_conversation,
    "Unmute a conversation (`unmute_conversation`; `changed` false when it was not muted)",
    ok={200: "Unmuted"},
    errors=SIGNED_IN,
    path_params=CHANNEL_PARAM,
)
