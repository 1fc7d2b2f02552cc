from __future__ import annotations

import pytest

from handlers.channels import Kind, dm_channel, parse_channel
from handlers.errors import OpError


@pytest.mark.parametrize(
    ("name", "kind", "key"),
    [
        ("dm:alice:bob", Kind.DM, "alice:bob"),
        ("group:G1", Kind.GROUP, "G1"),
        ("video:v-9_x", Kind.VIDEO, "v-9_x"),
        ("user:01ARZ3NDEKTSV4RRFFQ69G5FAV", Kind.USER, "01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        ("room:phnom.penh-1", Kind.ROOM, "phnom.penh-1"),
    ],
)
def test_valid_names(name: str, kind: Kind, key: str) -> None:
    channel = parse_channel(name)
    assert (channel.name, channel.kind, channel.key) == (name, kind, key)


def test_dm_peers_and_canonical_name() -> None:
    assert parse_channel("dm:a:b").peers == ("a", "b")
    assert dm_channel("zed", "amy") == "dm:amy:zed"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "room",
        "room:",
        ":x",
        "chat:x",
        "dm:b:a",
        "dm:a:a",
        "dm:a",
        "dm:a:b:c",
        "group:a.b",
        "video:has space",
        "user:ü",
        "room:" + "x" * 65,
        "group:" + "x" * 200,
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(OpError) as caught:
        parse_channel(name)
    assert caught.value.kind.code == "invalid_channel"
    assert caught.value.message
