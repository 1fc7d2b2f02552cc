"""The rules of push preferences on their own: time zones, quiet hours, mutes and kinds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from handlers.preferences import allows, is_muted, last_quiet_end, quiet_end, zone_of
from storage.push import Mute, PushPreferences, QuietHours


def ms(text: str) -> int:
    """Milliseconds of an ISO time in UTC."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize("name", ["Europe/Paris", "America/New_York", "UTC", "+05:30", "-08:00"])
def test_zones_are_iana_names_or_offsets(name: str) -> None:
    assert zone_of(name) is not None


@pytest.mark.parametrize(
    "name", ["Mars/Olympus", "+15:00", "+05:17", "05:30", "../../etc/passwd", "/etc/localtime", ""]
)
def test_anything_else_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a"):
        zone_of(name)


def test_quiet_hours_across_midnight_end_the_next_morning() -> None:
    quiet = QuietHours(22 * 60, 7 * 60, "+02:00")
    # 21:30 local: before them.
    assert quiet_end(quiet, ms("2026-06-01T19:30:00")) is None
    # 23:00 local: ends at 07:00 local the next day (05:00 UTC).
    assert quiet_end(quiet, ms("2026-06-01T21:00:00")) == ms("2026-06-02T05:00:00")
    # 03:00 local: ends at 07:00 the same day.
    assert quiet_end(quiet, ms("2026-06-02T01:00:00")) == ms("2026-06-02T05:00:00")
    # 07:00 local: over.
    assert quiet_end(quiet, ms("2026-06-02T05:00:00")) is None
    assert last_quiet_end(quiet, ms("2026-06-02T05:00:00")) == ms("2026-06-02T05:00:00")
    assert last_quiet_end(quiet, ms("2026-06-02T04:59:00")) == ms("2026-06-01T05:00:00")


def test_quiet_hours_within_a_day_and_daylight_saving_time() -> None:
    quiet = QuietHours(13 * 60, 14 * 60 + 30, "Europe/Paris")
    # Winter: UTC+1; summer: UTC+2.
    assert quiet_end(quiet, ms("2026-01-15T12:10:00")) == ms("2026-01-15T13:30:00")
    assert quiet_end(quiet, ms("2026-07-15T11:10:00")) == ms("2026-07-15T12:30:00")
    assert quiet_end(quiet, ms("2026-07-15T12:40:00")) is None


def test_mutes_end_and_kinds_turn_off() -> None:
    prefs = PushPreferences(
        kinds_off=frozenset({"follow"}), mutes=(Mute("group:A", None), Mute("dm:a:b", 5000))
    )
    assert is_muted(prefs, "group:A", 10**15)
    assert is_muted(prefs, "dm:a:b", 4999)
    assert not is_muted(prefs, "dm:a:b", 5000)
    assert not allows(prefs, "follow", None, 0)
    assert allows(prefs, "comment", None, 0)
    assert not allows(prefs, "message", "group:A", 0)
    assert allows(prefs, "message", "group:B", 0)
