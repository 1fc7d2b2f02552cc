"""Push preferences: which kinds a user is told of, quiet hours, and muted conversations.

Ops: ``notification_settings``, ``set_notification_settings``, ``mute_conversation``,
``unmute_conversation``. REST routes call the same functions (``GET`` and ``PUT
/v1/notifications/settings``, ``PUT`` and ``DELETE /v1/notifications/mutes/{channel}``).

Rules:

- **Kinds** (:data:`storage.push.PUSH_KINDS`): ``message``, ``mention``, ``follow``,
  ``comment``, ``video`` (your video ready or rejected), each on unless turned off. The settings
  are replaced whole: a kind left out of ``set_notification_settings`` is on, quiet hours left
  out are none.
- **Quiet hours**: a daily window of local time (``start`` and ``end`` as ``HH:MM``, crossing
  midnight when ``end`` is earlier) in an IANA time zone (``Europe/Paris``) or a fixed offset
  (``+05:30``, ``-08:00``). A notification due inside them is **held**, due at their end, and
  keeps collapsing meanwhile (the morning brings "5 new messages from ann", not nothing); held
  notifications age from the end of the quiet hours, not from their first message.
- **Mutes**: a ``dm:`` or ``group:`` conversation the caller belongs to, for good or until a
  time (``until``, milliseconds since the epoch, in the future and at most
  :data:`MAX_MUTE_DAYS` ahead). A muted conversation notifies nothing, mentions included. At
  most ``MOOSIC_PUSH_MAX_MUTES`` at once (``limit_exceeded`` for one more; ended mutes do not
  count). Unmuting needs no membership (a member who left may still clean up).
- Preferences are checked when a notification is decided (no outbox write for what is off or
  muted; a node's decider remembers a user's preferences for 5 s, forgotten at once when they
  change through that node) and again, fresh, when it is about to be sent, so a change applies
  to what is pending too.
"""

from __future__ import annotations

import re
import time
from datetime import date, datetime, timedelta, timezone, tzinfo
from datetime import time as clock_time
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from handlers.base import Context, Params, Result, operation
from handlers.channels import MAX_CHANNEL_LENGTH, Kind, authorize_read, parse_channel
from handlers.errors import INVALID_CHANNEL, INVALID_PARAMS, LIMIT_EXCEEDED, OpError
from storage.push import PUSH_KINDS, PushPreferences, QuietHours

MAX_MUTE_DAYS = 366
"""How far ahead a mute's ``until`` may be (beyond: mute for good, without ``until``)."""
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")
_ZONE_CACHE: dict[str, tzinfo] = {}
_ZONE_CACHE_SIZE = 1024
"""Time zones parsed, remembered (there are about 600 IANA names; offsets are few too)."""

LocalTime = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
"""``HH:MM``, 24-hour, local time."""
ZoneName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


def zone_of(name: str) -> tzinfo:
    """The time zone of an IANA name or a ``±HH:MM`` offset; ValueError when it is neither."""
    found = _ZONE_CACHE.get(name)
    if found is not None:
        return found
    match = _OFFSET.match(name)
    if match is not None:
        sign, hours, minutes = match.groups()
        offset = timedelta(hours=int(hours), minutes=int(minutes))
        if minutes not in ("00", "30", "45") or offset > timedelta(hours=14):
            raise ValueError(f"{name} is not a UTC offset (-14:00 to +14:00)")
        zone: tzinfo = timezone(-offset if sign == "-" else offset)
    else:
        if name.startswith(("/", ".")) or ".." in name:
            raise ValueError(f"{name} is not a time zone")
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{name} is not a time zone") from None
    if len(_ZONE_CACHE) < _ZONE_CACHE_SIZE:
        _ZONE_CACHE[name] = zone
    return zone


def _local_ms(day: date, minute: int, zone: tzinfo) -> int:
    moment = datetime.combine(day, clock_time(minute // 60, minute % 60), tzinfo=zone)
    return int(moment.timestamp() * 1000)


def quiet_end(quiet: QuietHours, now: int) -> int | None:
    """When the quiet hours ``now`` (ms) is in end (ms); None when it is outside them."""
    zone = zone_of(quiet.zone)
    local = datetime.fromtimestamp(now / 1000, zone)
    minute = local.hour * 60 + local.minute
    today = local.date()
    if quiet.start < quiet.end:
        inside = quiet.start <= minute < quiet.end
        end_day = today
    else:
        inside = minute >= quiet.start or minute < quiet.end
        end_day = today + timedelta(days=1) if minute >= quiet.start else today
    if not inside:
        return None
    return _local_ms(end_day, quiet.end, zone)


def last_quiet_end(quiet: QuietHours, now: int) -> int:
    """The latest end of the quiet hours at or before ``now`` (ms)."""
    zone = zone_of(quiet.zone)
    today = datetime.fromtimestamp(now / 1000, zone).date()
    end = _local_ms(today, quiet.end, zone)
    return end if end <= now else _local_ms(today - timedelta(days=1), quiet.end, zone)


def is_muted(preferences: PushPreferences, conversation: str, now: int) -> bool:
    return any(
        mute.conversation == conversation and (mute.until is None or mute.until > now)
        for mute in preferences.mutes
    )


def allows(preferences: PushPreferences, kind: str, channel: str | None, now: int) -> bool:
    """Whether the user wants notifications of ``kind`` (a preference kind) from ``channel``."""
    if kind in preferences.kinds_off:
        return False
    return channel is None or not is_muted(preferences, channel, now)


def held_until(preferences: PushPreferences, now: int) -> int | None:
    """The end of the quiet hours the user is in at ``now``; None outside them."""
    return None if preferences.quiet is None else quiet_end(preferences.quiet, now)


# -- ops -------------------------------------------------------------------------------------


class KindSwitches(msgspec.Struct, forbid_unknown_fields=True):
    """One switch per kind; a kind left out is on."""

    message: bool = True
    mention: bool = True
    follow: bool = True
    comment: bool = True
    video: bool = True


class QuietHoursParams(msgspec.Struct, forbid_unknown_fields=True):
    start: LocalTime
    end: LocalTime
    timezone: ZoneName
    """An IANA time zone (``Europe/Paris``) or an offset from UTC (``+05:30``)."""


class NotificationSettingsParams(Params, tag="notification_settings"):
    pass


class SetNotificationSettingsParams(Params, tag="set_notification_settings"):
    kinds: KindSwitches = msgspec.field(default_factory=KindSwitches)
    quiet_hours: QuietHoursParams | None = None


ChannelName = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CHANNEL_LENGTH)]


class MuteConversationParams(Params, tag="mute_conversation"):
    channel: ChannelName
    until: Annotated[int, msgspec.Meta(ge=0)] | None = None
    """Milliseconds since the epoch when the mute ends; none: until unmuted."""


class UnmuteConversationParams(Params, tag="unmute_conversation"):
    channel: ChannelName


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def settings_fields(preferences: PushPreferences, now: int, max_mutes: int) -> Result:
    """Preferences as clients see them (ended mutes left out)."""
    quiet = preferences.quiet
    return {
        "kinds": {kind: kind not in preferences.kinds_off for kind in PUSH_KINDS},
        "quiet_hours": None
        if quiet is None
        else {"start": _hhmm(quiet.start), "end": _hhmm(quiet.end), "timezone": quiet.zone},
        "quiet_now": quiet is not None and quiet_end(quiet, now) is not None,
        "mutes": [
            {"channel": mute.conversation, "until": mute.until}
            for mute in preferences.mutes
            if mute.until is None or mute.until > now
        ],
        "max_mutes": max_mutes,
    }


def _now() -> int:
    return int(time.time() * 1000)


def _changed(ctx: Context) -> None:
    if ctx.services.notifier is not None:
        ctx.services.notifier.preferences_changed(ctx.user_id)


@operation(NotificationSettingsParams)
async def notification_settings(ctx: Context, params: NotificationSettingsParams) -> Result:
    """The caller's push preferences: kinds, quiet hours, mutes in force."""
    preferences = await ctx.services.store.get_push_preferences(ctx.user_id)
    return settings_fields(preferences, _now(), ctx.services.limits.max_mutes)


@operation(SetNotificationSettingsParams)
async def set_notification_settings(ctx: Context, params: SetNotificationSettingsParams) -> Result:
    """Replace the caller's kinds and quiet hours (mutes stay)."""
    kinds_off = frozenset(kind for kind in PUSH_KINDS if not getattr(params.kinds, kind))
    quiet = None
    if params.quiet_hours is not None:
        given = params.quiet_hours
        try:
            zone_of(given.timezone)
        except ValueError as exc:
            raise OpError(INVALID_PARAMS, f"{exc} - at `$.quiet_hours.timezone`") from None
        if given.start == given.end:
            raise OpError(
                INVALID_PARAMS, "quiet hours start and end at different times - at `$.quiet_hours`"
            )
        quiet = QuietHours(_minutes(given.start), _minutes(given.end), given.timezone)
    store = ctx.services.store
    await store.set_push_preferences(ctx.user_id, kinds_off=kinds_off, quiet=quiet)
    _changed(ctx)
    preferences = await store.get_push_preferences(ctx.user_id)
    return settings_fields(preferences, _now(), ctx.services.limits.max_mutes)


def _conversation(name: str) -> str:
    channel = parse_channel(name)
    if channel.kind not in (Kind.DM, Kind.GROUP):
        raise OpError(INVALID_CHANNEL, "only dm: and group: conversations can be muted")
    return channel.name


@operation(MuteConversationParams)
async def mute_conversation(ctx: Context, params: MuteConversationParams) -> Result:
    """Mute one of the caller's conversations, for good or until ``until``."""
    name = _conversation(params.channel)
    await authorize_read(ctx, parse_channel(name))
    now = _now()
    if params.until is not None:
        if params.until <= now:
            raise OpError(INVALID_PARAMS, "until is in the past - at `$.until`")
        if params.until > now + MAX_MUTE_DAYS * 86_400_000:
            raise OpError(
                INVALID_PARAMS,
                f"until is at most {MAX_MUTE_DAYS} days ahead (leave it out to mute for good)"
                " - at `$.until`",
            )
    limit = ctx.services.limits.max_mutes
    if not await ctx.services.store.mute_conversation(
        ctx.user_id, name, params.until, now=now, limit=limit
    ):
        raise OpError(LIMIT_EXCEEDED, f"at most {limit} muted conversations: unmute one first")
    _changed(ctx)
    return {"channel": name, "muted": True, "until": params.until}


@operation(UnmuteConversationParams)
async def unmute_conversation(ctx: Context, params: UnmuteConversationParams) -> Result:
    """Unmute a conversation; ``changed`` false when it was not muted."""
    name = _conversation(params.channel)
    changed = await ctx.services.store.unmute_conversation(ctx.user_id, name)
    _changed(ctx)
    return {"channel": name, "muted": False, "changed": changed}
