"""Which region is a channel's home (handlers/regions.py)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.regions.home import HomeLink
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


class _Socket:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)


async def test_a_late_unfollow_leaves_a_newer_follow_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay sends an unfollow from a task, so a new follow of the channel can overtake it;
    the home ends only the follow the unfollow names."""
    streams: dict[int, asyncio.Event] = {}

    async def stream(self: HomeLink, channel: str, since: int, epoch: str, ref: int) -> None:
        streams[ref] = asyncio.Event()
        await asyncio.Event().wait()

    monkeypatch.setattr(HomeLink, "_stream", stream)
    link = HomeLink(_Socket(), None, None, max_channels=1)  # type: ignore[arg-type]
    follow = b'{"op":"follow","channel":"room:kh.a","since":0,"ref":%d}'
    await link._command(follow % 1)
    await link._command(follow % 2)
    await link._command(b'{"op":"unfollow","channel":"room:kh.a","ref":1}')
    await asyncio.sleep(0)
    assert link.following == 1
    assert link._streams["room:kh.a"][0] == 2
    assert list(streams) == [2]  # the first was cancelled by the second follow
    await link._command(b'{"op":"unfollow","channel":"room:kh.a","ref":2}')
    assert link.following == 0
    # A second channel over the bound is refused, with the follow's ref.
    await link._command(follow % 3)
    await link._command(b'{"op":"follow","channel":"room:kh.b","ref":4}')
    socket = link._ws
    assert isinstance(socket, _Socket)
    assert b'"op":"refused"' in socket.sent[-1]
    assert b'"ref":4' in socket.sent[-1]
