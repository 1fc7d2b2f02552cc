"""The SQLite store as a region's copy of channels another region orders (docs/regions.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.base import ChannelPosition, Message
from storage.sqlite import SQLiteStore


@pytest.fixture
async def homes(tmp_path: Path) -> AsyncIterator[tuple[SQLiteStore, SQLiteStore]]:
    """The home region's store (tagged ``kh``) and another region's (tagged ``au``)."""
    home = SQLiteStore(tmp_path / "kh.db", id_tag="_kh")
    away = SQLiteStore(tmp_path / "au.db", id_tag="_au")
    await home.open()
    await away.open()
    yield home, away
    await home.close()
    await away.close()


async def test_ids_minted_with_a_tag_carry_it(homes: tuple[SQLiteStore, SQLiteStore]) -> None:
    home, away = homes
    user = await home.create_user("alice", "hash")
    other = await away.create_user("bob", "hash")
    group = await away.create_group("g", other.id, [user.id])
    assert user.id.endswith("_kh")
    assert len(user.id) == 26 + 3
    assert other.id.endswith("_au")
    assert group.id.endswith("_au")
    assert await away.is_member(group.id, user.id)


async def _appended(store: SQLiteStore, channel: str, count: int) -> tuple[str, list[Message]]:
    epoch = ""
    for n in range(count):
        stored = await store.append(channel, "u1", b'{"n":%d}' % n, f"c{n}")
        epoch = stored.epoch
    return epoch, await store.read_since(channel, 0, limit=count)


async def test_a_copy_takes_the_homes_messages_once_in_order(
    homes: tuple[SQLiteStore, SQLiteStore],
) -> None:
    home, away = homes
    channel = "room:kh.lobby"
    epoch, messages = await _appended(home, channel, 6)
    assert await away.replicate(channel, epoch, messages[:3]) == ChannelPosition(3, epoch)
    # A second copy of what it has, then the rest: each message once.
    assert await away.replicate(channel, epoch, messages[1:]) == ChannelPosition(6, epoch)
    assert await away.read_since(channel, 0, limit=10) == messages
    assert await away.position(channel) == await home.position(channel)
    assert [m.id for m in await away.history(channel, limit=10, before=None)] == [
        m.id for m in reversed(messages)
    ]


async def test_a_gap_stops_the_batch(homes: tuple[SQLiteStore, SQLiteStore]) -> None:
    home, away = homes
    channel = "room:kh.gaps"
    epoch, messages = await _appended(home, channel, 5)
    position = await away.replicate(channel, epoch, [messages[0], messages[2], messages[3]])
    assert position == ChannelPosition(1, epoch)
    assert [m.offset for m in await away.read_since(channel, 0, limit=10)] == [1]


async def test_a_new_epoch_replaces_the_copy(homes: tuple[SQLiteStore, SQLiteStore]) -> None:
    home, away = homes
    channel = "room:kh.reset"
    epoch, messages = await _appended(home, channel, 3)
    await away.replicate(channel, epoch, messages)
    fresh = [Message("01NEW", channel, 1, "u2", b"{}", None, 1)]
    assert await away.replicate(channel, "newepoch", fresh) == ChannelPosition(1, "newepoch")
    assert await away.read_since(channel, 0, limit=10) == fresh


async def test_a_copied_dm_is_in_both_users_conversation_lists(
    homes: tuple[SQLiteStore, SQLiteStore],
) -> None:
    home, away = homes
    channel = "dm:a_kh:b_au"
    epoch = (await home.append(channel, "a_kh", b'{"hi":1}', None)).epoch
    await away.replicate(channel, epoch, await home.read_since(channel, 0, limit=5))
    for user in ("a_kh", "b_au"):
        listed = await away.list_conversations(user, limit=10, before=None)
        assert [(c.channel, c.last_offset) for c in listed] == [(channel, 1)]
