"""Which region is a channel's home (handlers/regions.py)."""

from __future__ import annotations

import pytest

from handlers.channels import parse_channel
from handlers.regions import RegionPlan, id_tag

PLAN = RegionPlan("au", ("kh", "au", "us-east-1"), rooms="kh")
KH_USER = "01HZZZZZZZZZZZZZZZZZZZZZZZ" + id_tag("kh")
AU_USER = "01J00000000000000000000000" + id_tag("au")
OLD_USER = "01H00000000000000000000000"
"""Made before regions were turned on: no tag."""


def home(name: str) -> str | None:
    return PLAN.home(parse_channel(name))


def test_a_dm_is_homed_with_its_lower_user() -> None:
    assert home(f"dm:{KH_USER}:{AU_USER}") == "kh"
    assert home(f"dm:{AU_USER}:zz_us-east-1") == "au"
    assert home(f"dm:{OLD_USER}:{AU_USER}") == "kh"  # untagged: the original region


def test_groups_and_rooms() -> None:
    assert home("group:01J0000000000000000000000_us-east-1") == "us-east-1"
    assert home("group:01J0000000000000000000000") == "kh"
    assert home("group:x_unknown") == "kh"
    assert home("room:au.lobby") == "au"
    assert home("room:lobby") == "kh"
    assert home("room:mars.lobby") == "kh"


def test_video_and_user_channels_are_regional() -> None:
    assert home("video:abc") is None
    assert home(f"user:{KH_USER}") is None
    assert PLAN.remote_home(parse_channel("room:au.x")) is None
    assert PLAN.remote_home(parse_channel("room:kh.x")) == "kh"


def test_the_plan_needs_its_regions_in_the_map() -> None:
    with pytest.raises(ValueError, match="must be in the map"):
        RegionPlan("eu", ("kh", "au"), rooms="kh")
    with pytest.raises(ValueError, match="must be in the map"):
        RegionPlan("kh", ("kh", "au"), rooms="eu")
