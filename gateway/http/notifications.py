"""REST routes of push preferences and mutes; the same handlers as the ops
(:mod:`handlers.preferences`).

Nothing here is cached: the settings are per user and small, and change when the user says so.
"""

from __future__ import annotations

from zoneinfo import available_timezones

from gateway.http.routes import BOOLEAN, COUNT, SIGNED_IN, STRING, RouteTable, Schema, obj, ref
from gateway.settings import Settings
from handlers import preferences
from handlers.channels import ID_PATTERN, MAX_CHANNEL_LENGTH
from storage.push import PUSH_KINDS

NULLABLE_TIME = {"type": ["integer", "null"], "minimum": 0}
KINDS = {kind: BOOLEAN for kind in PUSH_KINDS}
LOCAL_TIME = {"type": "string", "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9]$"}
UTC_OFFSET = r"^[+-]((0[0-9]|1[0-3]):(00|30|45)|14:00)$"
CONVERSATION_PARAM = {
    "channel": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_CHANNEL_LENGTH,
        "pattern": rf"^(?:dm:{ID_PATTERN}:{ID_PATTERN}|group:{ID_PATTERN})$",
        "description": "a `dm:{a}:{b}` or `group:{id}` conversation (others: `invalid_channel`); "
        "a DM's two user ids are different and in sorted order (`a < b`), else "
        "`invalid_channel`",
    }
}


def _kinds(schema: Schema, settings: Settings) -> Schema:
    """The switches, each optional (a kind left out is on)."""
    return {"type": "object", "properties": KINDS, "additionalProperties": False}


def _quiet_hours(schema: Schema, settings: Settings) -> Schema:
    """Quiet hours or null; a time zone is one this server knows or an offset from UTC."""
    zone = {
        "anyOf": [
            {"enum": sorted(available_timezones())},
            {"type": "string", "pattern": UTC_OFFSET},
        ]
    }
    hours = obj({"start": LOCAL_TIME, "end": LOCAL_TIME, "timezone": zone})
    hours["description"] = "`start` and `end` differ (the same time twice: `invalid_params`)"
    return {"anyOf": [hours, {"type": "null"}], "default": None}


def _until(schema: Schema, settings: Settings) -> Schema:
    return {
        "anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}],
        "default": None,
        "description": "ms since the epoch when the mute ends, in the future and at most "
        f"{preferences.MAX_MUTE_DAYS} days ahead (else `invalid_params`); null or left out: "
        "until unmuted",
    }


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
    fields={"kinds": _kinds, "quiet_hours": _quiet_hours},
)
ROUTES.op(
    "PUT",
    "/v1/notifications/mutes/{channel}",
    preferences.mute_conversation,
    "Mute one of the caller's conversations, for good or until `until` (`mute_conversation`); "
    "beyond MOOSIC_PUSH_MAX_MUTES: `limit_exceeded` (409)",
    ok={200: "Muted"},
    errors=(*SIGNED_IN, 403, 409, 413),
    path_params=CONVERSATION_PARAM,
    in_body=True,
    fields={"until": _until},
)
ROUTES.op(
    "DELETE",
    "/v1/notifications/mutes/{channel}",
    preferences.unmute_conversation,
    "Unmute a conversation (`unmute_conversation`; `changed` false when it was not muted)",
    ok={200: "Unmuted"},
    errors=SIGNED_IN,
    path_params=CONVERSATION_PARAM,
)
