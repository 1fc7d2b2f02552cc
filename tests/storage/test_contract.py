"""The contract of :class:`storage.base.Store`, run against every backend.

Each test runs twice, on SQLite (a temporary file) and on DynamoDB (DynamoDB Local, fresh tables,
index partitions of 5 offsets). ``make_store`` opens a second store on the same data where a
test needs two gateway nodes.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from storage import ids
from storage.base import (
    ChannelPosition,
    Conversation,
    Message,
    OneTimeState,
    ReadMark,
    RefreshState,
    Store,
)
from storage.errors import Conflict, NotFound
from storage.follows import FeedItem, FollowCounts
from storage.push import Mute, PushPreferences, QuietHours
from storage.videos import VideoCounts, VideoStatus
from tests.storage.conftest import MakeStore


async def publish(store: Store, channel: str, count: int, sender: str = "u1") -> list[Message]:
    """Append ``count`` messages one after another; return them in offset order."""
    stored = []
    for i in range(count):
        result = await store.append(channel, sender, b'{"n":%d}' % i, None)
        stored.append(result.message)
    return stored


# -- append and position -----------------------------------------------------------------------


async def test_first_append_starts_the_channel_at_offset_1(store: Store) -> None:
    before = await store.position("room:a")
    assert (before.offset, before.epoch) == (0, "")

    result = await store.append("room:a", "u1", b'{"text":"hi"}', "c1")

    message = result.message
    assert not result.duplicate
    assert result.epoch
    assert (message.channel, message.offset, message.sender) == ("room:a", 1, "u1")
    assert (message.data, message.client_msg_id) == (b'{"text":"hi"}', "c1")
    assert ids.is_valid(message.id)
    assert abs(message.ts - time.time() * 1000) < 60_000
    after = await store.position("room:a")
    assert (after.offset, after.epoch) == (1, result.epoch)


async def test_offsets_are_gap_free_per_channel_and_the_epoch_stays(store: Store) -> None:
    results = []
    for channel in ["room:a", "room:b", "room:a", "room:a", "room:b"]:
        results.append((channel, await store.append(channel, "u1", b"{}", None)))

    offsets = {c: [r.message.offset for ch, r in results if ch == c] for c in ("room:a", "room:b")}
    assert offsets == {"room:a": [1, 2, 3], "room:b": [1, 2]}
    epochs = {c: {r.epoch for ch, r in results if ch == c} for c in ("room:a", "room:b")}
    assert all(len(e) == 1 for e in epochs.values())
    assert (await store.position("room:a")).offset == 3
    assert (await store.position("room:b")).epoch == next(iter(epochs["room:b"]))


async def test_ids_grow_with_offsets(store: Store) -> None:
    messages = await publish(store, "room:a", 12)

    assert [m.offset for m in messages] == list(range(1, 13))
    assert [m.id for m in messages] == sorted(m.id for m in messages)
    assert len({m.id for m in messages}) == 12


async def test_a_repeated_client_msg_id_returns_the_first_message(store: Store) -> None:
    first = await store.append("room:a", "u1", b'{"v":1}', "c1")
    await store.append("room:a", "u2", b'{"v":2}', None)

    again = await store.append("room:a", "u1", b'{"v":"changed"}', "c1")

    assert again.duplicate
    assert again.message == first.message
    assert again.epoch == first.epoch
    assert (await store.position("room:a")).offset == 2


async def test_client_msg_ids_are_scoped_to_channel_and_sender(store: Store) -> None:
    first = await store.append("room:a", "u1", b"{}", "c1")

    other_sender = await store.append("room:a", "u2", b"{}", "c1")
    other_channel = await store.append("room:b", "u1", b"{}", "c1")
    no_id = [await store.append("room:a", "u1", b"{}", None) for _ in range(2)]

    assert (other_sender.duplicate, other_sender.message.offset) == (False, 2)
    assert (other_channel.duplicate, other_channel.message.offset) == (False, 1)
    assert [r.duplicate for r in no_id] == [False, False]
    assert [r.message.offset for r in no_id] == [3, 4]
    assert first.message.offset == 1


async def test_concurrent_appends_get_distinct_offsets_and_one_copy_per_client_id(
    store: Store,
) -> None:
    # 40 appends at once: 10 client ids sent twice each, 20 without a client id.
    calls = [
        store.append("room:a", "u1", b'{"k":"%d"}' % (i % 10), f"c{i % 10}") for i in range(20)
    ]
    calls += [store.append("room:a", "u2", b"{}", None) for _ in range(20)]

    results = await asyncio.gather(*calls)

    fresh = [r for r in results if not r.duplicate]
    assert sorted(r.message.offset for r in fresh) == list(range(1, 31))
    by_client_id: dict[str | None, set[str]] = {}
    for r in results[:20]:
        by_client_id.setdefault(r.message.client_msg_id, set()).add(r.message.id)
    assert all(len(found) == 1 for found in by_client_id.values())
    assert sum(r.duplicate for r in results) == 10
    assert (await store.position("room:a")).offset == 30
    stored = await store.read_since("room:a", 0, limit=100)
    assert [m.offset for m in stored] == list(range(1, 31))
    assert [m.id for m in stored] == sorted(m.id for m in stored)


async def test_two_nodes_appending_to_one_channel_share_one_sequence(
    make_store: MakeStore,
) -> None:
    node_a, node_b = await make_store(), await make_store()
    first = await node_a.append("room:a", "u1", b"{}", None)
    await node_b.append("room:a", "u2", b"{}", None)  # node A's view of the channel is now stale

    results = await asyncio.gather(
        *(
            node.append("room:a", "u1", b"{}", f"c{i}")
            for i in range(10)
            for node in (node_a, node_b)
        )
    )

    assert max(r.message.offset for r in results if not r.duplicate) == 12
    offsets = [m.offset for m in await node_b.read_since("room:a", 0, limit=100)]
    assert offsets == list(range(1, 13))
    assert sum(r.duplicate for r in results) == 10
    assert {r.epoch for r in results} == {first.epoch}
    # A retry that lands on the other node is still recognised.
    retried = await node_b.append("room:a", "u1", b"{}", "c3")
    assert (retried.duplicate, retried.message.client_msg_id) == (True, "c3")


# -- history -----------------------------------------------------------------------------------


async def test_history_pages_newest_first_back_to_the_start(store: Store) -> None:
    messages = await publish(store, "room:a", 12)
    await publish(store, "room:b", 3)

    pages = []
    before = None
    while True:
        page = await store.history("room:a", limit=5, before=before)
        if not page:
            break
        pages.append([m.offset for m in page])
        before = page[-1].id

    assert pages == [[12, 11, 10, 9, 8], [7, 6, 5, 4, 3], [2, 1]]
    newest = await store.history("room:a", limit=3, before=None)
    assert newest == list(reversed(messages))[:3]


async def test_history_of_an_empty_channel_is_empty(store: Store) -> None:
    assert await store.history("room:none", limit=10, before=None) == []


async def test_history_before_an_unknown_message_is_not_found(store: Store) -> None:
    [message] = await publish(store, "room:a", 1)
    await publish(store, "room:b", 1)

    with pytest.raises(NotFound):
        await store.history("room:a", limit=5, before=ids.IdGenerator().new())
    with pytest.raises(NotFound):
        await store.history("room:b", limit=5, before=message.id)  # exists, but elsewhere
    with pytest.raises(NotFound):
        await store.history("room:a", limit=5, before="not-an-id")
    assert await store.history("room:a", limit=5, before=message.id) == []


async def test_history_returns_whole_messages(store: Store) -> None:
    await store.append("room:a", "u1", b'{"a":1}', "c1")
    second = await store.append("room:a", "u2", b'{"b":"\xc3\xa9"}', None)

    page = await store.history("room:a", limit=10, before=None)

    assert page[0] == second.message
    assert (page[1].sender, page[1].data, page[1].client_msg_id) == ("u1", b'{"a":1}', "c1")


# -- read_since --------------------------------------------------------------------------------


async def test_read_since_returns_what_follows_an_offset_oldest_first(store: Store) -> None:
    messages = await publish(store, "room:a", 13)

    assert await store.read_since("room:a", 0, limit=100) == messages
    assert await store.read_since("room:a", 3, limit=4) == messages[3:7]
    assert await store.read_since("room:a", 9, limit=100) == messages[9:]
    assert await store.read_since("room:a", 13, limit=100) == []
    assert await store.read_since("room:a", 50, limit=100) == []
    assert await store.read_since("room:a", -5, limit=2) == messages[:2]
    assert await store.read_since("room:none", 0, limit=10) == []


async def test_read_since_sees_an_append_of_another_node_at_once(make_store: MakeStore) -> None:
    node_a, node_b = await make_store(), await make_store()
    await publish(node_a, "room:a", 4)

    written = await node_b.append("room:a", "u2", b"{}", None)

    assert await node_a.read_since("room:a", 4, limit=10) == [written.message]
    assert (await node_a.position("room:a")).offset == 5


# -- accounts ----------------------------------------------------------------------------------


async def test_users_are_found_by_id_and_by_name(store: Store) -> None:
    user = await store.create_user("alice", "hash-a")

    assert ids.is_valid(user.id)
    assert (user.username, user.password_hash) == ("alice", "hash-a")
    assert abs(user.created_at - time.time()) < 60
    assert await store.get_user(user.id) == user
    assert await store.get_user_by_username("alice") == user
    assert await store.get_user("nobody") is None
    assert await store.get_user_by_username("Alice") is None


async def test_a_username_is_taken_once_even_under_concurrency(store: Store) -> None:
    results = await asyncio.gather(
        *(store.create_user("bob", f"hash-{i}") for i in range(5)), return_exceptions=True
    )

    created = [r for r in results if not isinstance(r, BaseException)]
    assert len(created) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
    assert await store.get_user_by_username("bob") == created[0]
    with pytest.raises(Conflict):
        await store.create_user("bob", "again")


# -- email addresses and passwords ----------------------------------------------------------


async def test_an_address_is_set_unverified_then_verified(store: Store) -> None:
    user = await store.create_user("alice", "hash-a")
    assert (user.email, user.email_verified) == (None, False)

    unverified = await store.set_email(user.id, "alice@example.com")

    assert unverified is not None
    assert (unverified.email, unverified.email_verified) == ("alice@example.com", False)
    assert await store.get_user_by_email("alice@example.com") is None  # verified ones only
    verified = await store.verify_email(user.id, "alice@example.com")
    assert verified is not None
    assert verified.email_verified
    for found in (
        await store.get_user(user.id),
        await store.get_user_by_username("alice"),
        await store.get_user_by_email("alice@example.com"),
    ):
        assert found == verified
    again = await store.set_email(user.id, "alice@example.com")  # the same address: kept
    assert again == verified


async def test_a_verified_address_belongs_to_one_account(store: Store) -> None:
    alice = await store.create_user("alice", "a")
    bob = await store.create_user("bob", "b")
    await store.set_email(alice.id, "shared@example.com")
    await store.set_email(bob.id, "shared@example.com")  # unverified: anyone may claim it

    await store.verify_email(bob.id, "shared@example.com")

    with pytest.raises(Conflict):
        await store.verify_email(alice.id, "shared@example.com")
    carol = await store.create_user("carol", "c")
    with pytest.raises(Conflict):
        await store.set_email(carol.id, "shared@example.com")
    found = await store.get_user_by_email("shared@example.com")
    assert found is not None
    assert found.id == bob.id


async def test_a_new_address_releases_the_verified_one(store: Store) -> None:
    alice = await store.create_user("alice", "a")
    bob = await store.create_user("bob", "b")
    await store.set_email(alice.id, "old@example.com")
    await store.verify_email(alice.id, "old@example.com")

    moved = await store.set_email(alice.id, "new@example.com")

    assert moved is not None
    assert (moved.email, moved.email_verified) == ("new@example.com", False)
    assert await store.get_user_by_email("old@example.com") is None
    # A token mailed for the old address no longer verifies anything.
    assert await store.verify_email(alice.id, "old@example.com") is None
    await store.set_email(bob.id, "old@example.com")
    taken = await store.verify_email(bob.id, "old@example.com")
    assert taken is not None
    assert taken.email_verified


async def test_address_calls_on_unknown_accounts(store: Store) -> None:
    assert await store.set_email("nobody", "x@example.com") is None
    assert await store.verify_email("nobody", "x@example.com") is None
    assert await store.set_password("nobody", "h") is False
    assert await store.get_user_by_email("x@example.com") is None


async def test_a_new_password_hash_is_found_by_id_and_by_name(store: Store) -> None:
    user = await store.create_user("alice", "old-hash")

    assert await store.set_password(user.id, "new-hash")

    by_id = await store.get_user(user.id)
    by_name = await store.get_user_by_username("alice")
    assert by_id is not None
    assert by_id.password_hash == "new-hash"
    assert by_name == by_id


# -- one-time tokens ---------------------------------------------------------------------------


async def test_a_one_time_token_is_used_once(store: Store) -> None:
    now = int(time.time())
    await store.add_one_time_token("h1", "password_reset", "u1", "s1", now + 60)

    first = await store.use_one_time_token("h1", "password_reset", now)
    second = await store.use_one_time_token("h1", "password_reset", now)

    assert (first.state, first.user_id, first.subject) == (OneTimeState.OK, "u1", "s1")
    assert (second.state, second.user_id) == (OneTimeState.USED, "u1")


async def test_one_time_tokens_unknown_expired_or_for_another_purpose(store: Store) -> None:
    now = int(time.time())
    await store.add_one_time_token("h1", "verify_email", "u1", "a@example.com", now + 60)
    await store.add_one_time_token("h2", "password_reset", "u1", "s", now)

    assert (await store.use_one_time_token("nope", "verify_email", now)).state is (
        OneTimeState.UNKNOWN
    )
    wrong = await store.use_one_time_token("h1", "password_reset", now)
    assert wrong.state is OneTimeState.UNKNOWN
    assert (await store.use_one_time_token("h2", "password_reset", now)).state is (
        OneTimeState.EXPIRED
    )
    assert (await store.use_one_time_token("h2", "password_reset", now - 1)).state is (
        OneTimeState.OK
    )
    # The wrong-purpose attempt did not use it up.
    ok = await store.use_one_time_token("h1", "verify_email", now)
    assert (ok.state, ok.subject) == (OneTimeState.OK, "a@example.com")
    with pytest.raises(Conflict):
        await store.add_one_time_token("h1", "verify_email", "u2", "b@example.com", now + 60)


async def test_a_one_time_token_is_used_once_under_concurrency(store: Store) -> None:
    now = int(time.time())
    await store.add_one_time_token("h1", "password_reset", "u1", "s", now + 60)

    uses = await asyncio.gather(
        *(store.use_one_time_token("h1", "password_reset", now) for _ in range(5))
    )

    assert sorted(u.state.value for u in uses) == ["ok"] + ["used"] * 4


# -- sessions of a user ------------------------------------------------------------------------


async def test_sessions_of_a_user_are_listed_by_family(store: Store) -> None:
    now = int(time.time())
    await store.add_refresh_token("t1", "u1", "fa", now + 60)
    await store.add_refresh_token("t2", "u1", "fa", now + 120)  # a refresh of the same login
    await store.add_refresh_token("t3", "u1", "fc", now + 60)
    await store.add_refresh_token("t4", "u1", "fb", now - 10)  # long expired
    await store.add_refresh_token("t5", "u2", "fd", now + 60)

    assert await store.list_sessions("u1", since=now, limit=10) == ["fa", "fc"]
    assert await store.list_sessions("u1", since=now - 20, limit=10) == ["fa", "fb", "fc"]
    assert await store.list_sessions("u1", since=now + 90, limit=10) == ["fa"]
    assert await store.list_sessions("u1", since=now - 20, limit=2) == ["fa", "fb"]
    assert await store.list_sessions("u1", since=now - 20, limit=2, after="fb") == ["fc"]
    assert await store.list_sessions("u2", since=now, limit=10) == ["fd"]
    assert await store.list_sessions("u3", since=now, limit=10) == []


# -- refresh tokens ----------------------------------------------------------------------------


async def test_a_refresh_token_is_used_once(store: Store) -> None:
    now = int(time.time())
    await store.add_refresh_token("t1", "u1", "f1", now + 60)

    first = await store.use_refresh_token("t1", now)
    second = await store.use_refresh_token("t1", now)

    assert (first.state, first.user_id, first.family_id) == (RefreshState.OK, "u1", "f1")
    assert (second.state, second.user_id, second.family_id) == (RefreshState.REUSED, "u1", "f1")


async def test_reuse_revokes_the_whole_family(store: Store) -> None:
    now = int(time.time())
    await store.add_refresh_token("t1", "u1", "f1", now + 60)
    await store.add_refresh_token("t2", "u1", "f1", now + 60)
    await store.add_refresh_token("t3", "u1", "f2", now + 60)
    await store.use_refresh_token("t1", now)

    assert (await store.use_refresh_token("t1", now)).state is RefreshState.REUSED

    assert (await store.use_refresh_token("t2", now)).state is RefreshState.REUSED
    assert (await store.use_refresh_token("t3", now)).state is RefreshState.OK


async def test_unknown_expired_and_revoked_tokens(store: Store) -> None:
    now = int(time.time())
    await store.add_refresh_token("old", "u1", "f1", now)
    await store.add_refresh_token("gone", "u1", "f2", now + 60)
    await store.revoke_family("f2")
    await store.revoke_family("f2")  # twice is fine

    assert (await store.use_refresh_token("nope", now)).state is RefreshState.UNKNOWN
    expired = await store.use_refresh_token("old", now)
    assert (expired.state, expired.user_id, expired.family_id) == (RefreshState.EXPIRED, "u1", "f1")
    assert (await store.use_refresh_token("old", now - 1)).state is RefreshState.OK
    assert (await store.use_refresh_token("gone", now)).state is RefreshState.REUSED


async def test_an_expired_token_that_was_used_is_reuse(store: Store) -> None:
    now = int(time.time())
    await store.add_refresh_token("t1", "u1", "f1", now + 10)
    await store.add_refresh_token("t2", "u1", "f1", now + 60)
    await store.use_refresh_token("t1", now)

    assert (await store.use_refresh_token("t1", now + 20)).state is RefreshState.REUSED
    assert (await store.use_refresh_token("t2", now)).state is RefreshState.REUSED


async def test_concurrent_uses_of_one_token_let_one_through(store: Store) -> None:
    now = int(time.time())
    await store.add_refresh_token("t1", "u1", "f1", now + 60)

    uses = await asyncio.gather(*(store.use_refresh_token("t1", now) for _ in range(6)))

    states = sorted(u.state.value for u in uses)
    assert states == ["ok"] + ["reused"] * 5


async def test_a_token_hash_is_stored_once(store: Store) -> None:
    now = int(time.time())
    await store.add_refresh_token("t1", "u1", "f1", now + 60)

    with pytest.raises(Conflict):
        await store.add_refresh_token("t1", "u2", "f9", now + 60)
    assert (await store.use_refresh_token("t1", now)).user_id == "u1"


# -- groups ------------------------------------------------------------------------------------


async def test_a_group_is_created_with_its_owner_as_member(store: Store) -> None:
    group = await store.create_group("friends", "u5", ["u2", "u9", "u2", "u5", "u1"])

    assert (group.name, group.owner) == ("friends", "u5")
    assert ids.is_valid(group.id)
    assert await store.get_group(group.id) == group
    assert await store.get_group("missing") is None
    # Members who joined together are listed by id.
    assert await store.list_members(group.id, limit=10) == ["u1", "u2", "u5", "u9"]
    assert await store.list_members(group.id, limit=2) == ["u1", "u2"]
    assert await store.count_members(group.id) == 4
    assert await store.is_member(group.id, "u9")
    assert not await store.is_member(group.id, "u3")
    assert await store.count_members("missing") == 0
    assert await store.list_members("missing", limit=5) == []


async def test_members_are_added_and_removed_once(store: Store) -> None:
    group = await store.create_group("g", "owner", [])

    assert await store.add_member(group.id, "u1")
    assert not await store.add_member(group.id, "u1")
    assert await store.is_member(group.id, "u1")
    assert await store.count_members(group.id) == 2
    assert await store.remove_member(group.id, "u1")
    assert not await store.remove_member(group.id, "u1")
    assert not await store.is_member(group.id, "u1")
    assert await store.count_members(group.id) == 1
    assert await store.list_members(group.id, limit=10) == ["owner"]


async def test_concurrent_adds_of_one_member_count_once(store: Store) -> None:
    group = await store.create_group("g", "owner", [])

    added = await asyncio.gather(*(store.add_member(group.id, "u1") for _ in range(5)))

    assert sorted(added) == [False] * 4 + [True]
    assert await store.count_members(group.id) == 2


async def test_a_large_group_is_listed_whole(store: Store) -> None:
    members = [f"user{i:03d}" for i in range(120)]

    group = await store.create_group("big", "owner", members)

    assert await store.count_members(group.id) == 121
    listed = await store.list_members(group.id, limit=1000)
    assert listed == sorted([*members, "owner"])
    assert await store.list_members(group.id, limit=50) == listed[:50]


# -- read positions and conversation lists -----------------------------------------------------

DM = "dm:u1:u2"


def by_channel(conversations: list[Conversation]) -> dict[str, Conversation]:
    return {c.channel: c for c in conversations}


async def test_positions_reads_many_channels_at_once(store: Store) -> None:
    await publish(store, "room:a", 3)
    [b] = await publish(store, "room:b", 1)
    names = [f"room:none{i}" for i in range(110)] + ["room:a", "room:b", "room:a"]

    found = await store.positions(names)

    assert set(found) == set(names)
    assert found["room:a"] == await store.position("room:a")
    assert (found["room:a"].offset, found["room:b"].offset) == (3, b.offset)
    assert found["room:b"].epoch
    assert {found[f"room:none{i}"] for i in range(110)} == {ChannelPosition(0, "")}
    assert await store.positions([]) == {}


async def test_mark_read_is_a_monotonic_maximum_clamped_to_the_last_offset(store: Store) -> None:
    await publish(store, DM, 5, sender="u1")

    assert await store.mark_read("u2", DM, 3) == ReadMark(3, 5, moved=True)
    assert await store.mark_read("u2", DM, 2) == ReadMark(3, 5, moved=False)
    assert await store.mark_read("u2", DM, 3) == ReadMark(3, 5, moved=False)
    assert await store.mark_read("u2", DM, 0) == ReadMark(3, 5, moved=False)
    assert await store.mark_read("u2", DM, 99) == ReadMark(5, 5, moved=True)
    assert await store.mark_read("u2", DM, 99) == ReadMark(5, 5, moved=False)
    await publish(store, DM, 2, sender="u1")
    assert await store.mark_read("u2", DM, 6) == ReadMark(6, 7, moved=True)
    assert await store.read_positions("u2", [DM, "dm:u2:u3"]) == {DM: 6, "dm:u2:u3": 0}


async def test_mark_read_of_an_empty_channel_stays_at_zero(store: Store) -> None:
    assert await store.mark_read("u1", "group:nothing", 4) == ReadMark(0, 0, moved=False)
    assert await store.mark_read("u1", "group:nothing", 0) == ReadMark(0, 0, moved=False)
    assert await store.read_positions("u1", ["group:nothing"]) == {"group:nothing": 0}
    assert await store.read_positions("u1", []) == {}


async def test_concurrent_mark_reads_keep_the_highest(make_store: MakeStore) -> None:
    node_a, node_b = await make_store(), await make_store()
    await publish(node_a, DM, 20, sender="u1")
    offsets = list(range(1, 21))
    random.Random(5).shuffle(offsets)

    marks = await asyncio.gather(
        *(
            (node_a if i % 2 else node_b).mark_read("u2", DM, offset)
            for i, offset in enumerate(offsets)
        )
    )

    assert all(m.last_offset == 20 and m.last_read <= 20 for m in marks)
    assert any(m.moved and m.last_read == 20 for m in marks)
    assert await node_a.read_positions("u2", [DM]) == {DM: 20}
    assert await node_b.mark_read("u2", DM, 20) == ReadMark(20, 20, moved=False)


async def test_many_read_positions_are_read_at_once(store: Store) -> None:
    channels = [f"group:g{i:03d}" for i in range(105)]
    for channel in channels[:3]:
        await publish(store, channel, 2, sender="u1")
    await store.mark_read("u2", channels[1], 1)

    found = await store.read_positions("u2", [*channels, channels[1]])

    assert found == {**dict.fromkeys(channels, 0), channels[1]: 1}
    assert (await store.read_positions("u1", channels[:4])) == {
        **dict.fromkeys(channels[:3], 2),
        channels[3]: 0,
    }


async def test_appending_moves_the_senders_read_position_in_dms_and_groups(store: Store) -> None:
    await publish(store, DM, 3, sender="u1")
    await publish(store, DM, 1, sender="u2")
    await publish(store, "group:g1", 2, sender="u3")
    await publish(store, "room:a", 2, sender="u1")
    # A repeated client message id stores nothing and moves nothing.
    await store.mark_read("u2", "group:g1", 1)
    await store.append("group:g1", "u2", b"{}", "c1")
    await publish(store, "group:g1", 1, sender="u3")
    await store.append("group:g1", "u2", b"{}", "c1")

    assert await store.read_positions("u1", [DM, "room:a"]) == {DM: 3, "room:a": 0}
    assert await store.read_positions("u2", [DM, "group:g1"]) == {DM: 4, "group:g1": 3}
    assert await store.read_positions("u3", ["group:g1"]) == {"group:g1": 4}


async def test_a_dm_enters_both_lists_with_its_first_message(store: Store) -> None:
    assert await store.list_conversations("u1", limit=10, before=None) == []

    first = await store.append(DM, "u1", b"{}", None)
    await publish(store, DM, 2, sender="u2")

    for user, last_read in (("u1", 1), ("u2", 3)):
        [entry] = await store.list_conversations(user, limit=10, before=None)
        assert (entry.channel, entry.last_offset, entry.epoch) == (DM, 3, first.epoch)
        assert (entry.last_read, entry.name) == (last_read, None)
        assert entry.last_ts is not None
        assert abs(entry.last_ts - time.time() * 1000) < 60_000
        assert entry.cursor
    assert await store.list_conversations("u3", limit=10, before=None) == []
    # Rooms and a user's own channel are not conversations.
    await publish(store, "room:a", 1, sender="u3")
    await publish(store, "user:u3", 1, sender="u3")
    assert await store.list_conversations("u3", limit=10, before=None) == []


async def test_groups_enter_and_leave_their_members_lists(store: Store) -> None:
    group = await store.create_group("Family", "owner", ["u1"])
    channel = f"group:{group.id}"

    for user in ("owner", "u1"):
        [entry] = await store.list_conversations(user, limit=10, before=None)
        assert (entry.channel, entry.name, entry.last_offset, entry.epoch) == (
            channel,
            "Family",
            0,
            "",
        )
        assert (entry.last_read, entry.last_ts) == (0, None)

    await publish(store, channel, 3, sender="owner")
    assert await store.add_member(group.id, "u2")
    [joined] = await store.list_conversations("u2", limit=10, before=None)
    # A member added later starts with what is already there read.
    assert (joined.channel, joined.last_offset, joined.last_read) == (channel, 3, 3)
    assert not await store.add_member(group.id, "u2")

    await store.mark_read("u1", channel, 2)
    assert await store.remove_member(group.id, "u1")
    assert await store.list_conversations("u1", limit=10, before=None) == []
    assert await store.read_positions("u1", [channel]) == {channel: 2}
    assert not await store.remove_member(group.id, "u1")
    assert await store.list_conversations("u1", limit=10, before=None) == []

    await publish(store, channel, 2, sender="owner")
    assert await store.add_member(group.id, "u1")
    [back] = await store.list_conversations("u1", limit=10, before=None)
    assert (back.channel, back.last_offset, back.last_read, back.name) == (channel, 5, 5, "Family")
    owner = by_channel(await store.list_conversations("owner", limit=10, before=None))
    assert owner[channel].last_read == 5


async def test_conversations_are_listed_newest_entry_first_in_stable_pages(store: Store) -> None:
    made: list[str] = []
    for peer in ("u2", "u3", "u4", "u5"):
        channel = f"dm:u1:{peer}"
        await store.append(channel, peer, b"{}", None)
        made.append(channel)
        await asyncio.sleep(0.002)
    group = await store.create_group("g", "u9", ["u1"])
    made.append(f"group:{group.id}")
    await asyncio.sleep(0.002)
    await store.append("dm:u0:u1", "u1", b"{}", None)
    made.append("dm:u0:u1")
    # New messages in an older conversation do not reorder the list.
    await publish(store, made[0], 3, sender="u2")

    pages: list[list[str]] = []
    before = None
    while True:
        page = await store.list_conversations("u1", limit=4, before=before)
        pages.append([c.channel for c in page])
        if len(page) < 4:
            break
        before = page[-1].cursor

    assert pages == [list(reversed(made))[:4], list(reversed(made))[4:]]
    everything = await store.list_conversations("u1", limit=100, before=None)
    assert [c.channel for c in everything] == list(reversed(made))
    cursors = [c.cursor for c in everything]
    assert cursors == sorted(cursors, reverse=True)
    assert await store.list_conversations("u1", limit=100, before=cursors[-1]) == []
    assert await store.list_conversations("u1", limit=0, before=None) == []
    assert by_channel(everything)[made[0]].last_offset == 4


async def test_a_long_list_is_read_whole(store: Store) -> None:
    groups = [await store.create_group(f"g{i}", "owner", ["u1"]) for i in range(60)]
    for group in groups[:2]:
        await publish(store, f"group:{group.id}", 2, sender="owner")

    listed = await store.list_conversations("u1", limit=100, before=None)

    assert len(listed) == 60
    names = {c.channel: c.name for c in listed}
    assert names == {f"group:{g.id}": g.name for g in groups}
    counts = {c.channel: (c.last_offset, c.last_read) for c in listed}
    assert counts[f"group:{groups[0].id}"] == (2, 0)
    assert counts[f"group:{groups[5].id}"] == (0, 0)


async def test_read_positions_and_lists_are_shared_between_nodes(make_store: MakeStore) -> None:
    node_a, node_b = await make_store(), await make_store()
    await publish(node_a, DM, 4, sender="u1")

    assert (await node_b.mark_read("u2", DM, 3)).moved
    [entry] = await node_a.list_conversations("u2", limit=5, before=None)

    assert (entry.last_offset, entry.last_read) == (4, 3)
    assert await node_a.mark_read("u2", DM, 2) == ReadMark(3, 4, moved=False)


# -- lifecycle ---------------------------------------------------------------------------------


async def test_ping_answers_while_open(make_store: MakeStore) -> None:
    store = await make_store()
    assert await store.ping()

    await store.close()

    assert not await store.ping()


async def test_data_outlives_the_store_that_wrote_it(make_store: MakeStore) -> None:
    writer = await make_store()
    written = await publish(writer, "room:a", 3)
    user = await writer.create_user("carol", "h")
    await writer.append(DM, "u1", b"{}", None)
    await writer.close()

    reader = await make_store()

    assert await reader.read_since("room:a", 0, limit=10) == written
    assert [c.channel for c in await reader.list_conversations("u2", limit=5, before=None)] == [DM]
    assert await reader.read_positions("u1", [DM]) == {DM: 1}
    assert await reader.get_user_by_username("carol") == user
    assert (await reader.append("room:a", "u1", b"{}", None)).message.offset == 4


# -- videos, likes, comments, totals -----------------------------------------------------------


async def test_a_video_is_created_read_and_moved_through_its_statuses(store: Store) -> None:
    video = await store.create_video("u1", "My cat")

    assert (video.owner, video.title, video.status) == ("u1", "My cat", VideoStatus.UPLOADING)
    assert video.counts == VideoCounts()
    assert ids.is_valid(video.id)
    assert abs(video.created_at - time.time()) < 60
    assert await store.get_video(video.id) == video
    assert await store.get_video(ids.IdGenerator().new()) is None

    assert await store.set_video_status(video.id, VideoStatus.PROCESSING)
    assert not await store.set_video_status(
        video.id, VideoStatus.READY, expected=VideoStatus.MODERATING
    )
    assert await store.set_video_status(
        video.id, VideoStatus.MODERATING, expected=VideoStatus.PROCESSING
    )
    assert not await store.set_video_status("nope", VideoStatus.READY)
    stored = await store.get_video(video.id)
    assert stored is not None
    assert stored.status is VideoStatus.MODERATING
    ready = await store.create_video("u2", "Ready at once", status=VideoStatus.READY)
    assert (await store.get_video(ready.id)) == ready


async def test_concurrent_status_moves_from_one_status_let_one_through(
    make_store: MakeStore,
) -> None:
    node_a, node_b = await make_store(), await make_store()
    video = await node_a.create_video("u1", "v")

    moved = await asyncio.gather(
        *(
            node.set_video_status(video.id, status, expected=VideoStatus.UPLOADING)
            for node, status in [
                (node_a, VideoStatus.PROCESSING),
                (node_b, VideoStatus.FAILED),
                (node_a, VideoStatus.FAILED),
                (node_b, VideoStatus.PROCESSING),
            ]
        )
    )

    assert sorted(moved) == [False, False, False, True]


async def test_a_like_changes_once_and_an_unlike_undoes_it(store: Store) -> None:
    video = await store.create_video("u1", "v", status=VideoStatus.READY)

    assert await store.set_like(video.id, "u2", True)
    assert not await store.set_like(video.id, "u2", True)
    assert await store.has_liked(video.id, "u2")
    assert not await store.has_liked(video.id, "u3")
    assert await store.count_likes(video.id) == 1

    assert await store.set_like(video.id, "u2", False)
    assert not await store.set_like(video.id, "u2", False)
    assert not await store.set_like(video.id, "u3", False)
    assert not await store.has_liked(video.id, "u2")
    assert await store.count_likes(video.id) == 0

    assert await store.set_like(video.id, "u2", True)
    assert await store.count_likes(video.id) == 1


async def test_the_same_like_on_two_nodes_at_once_changes_once(make_store: MakeStore) -> None:
    node_a, node_b = await make_store(), await make_store()
    video = await node_a.create_video("u1", "v", status=VideoStatus.READY)
    users = [f"u{i}" for i in range(40)]

    changed = await asyncio.gather(
        *(node.set_like(video.id, user, True) for user in users for node in (node_a, node_b))
    )

    assert sum(changed) == len(users)
    assert await node_b.count_likes(video.id) == len(users)
    unliked = await asyncio.gather(
        *(node.set_like(video.id, user, False) for user in users[:10] for node in (node_b, node_a))
    )
    assert sum(unliked) == 10
    assert await node_a.count_likes(video.id) == 30


async def test_likes_are_kept_per_video(store: Store) -> None:
    first = await store.create_video("u1", "a", status=VideoStatus.READY)
    second = await store.create_video("u1", "b", status=VideoStatus.READY)

    await asyncio.gather(*(store.set_like(first.id, f"u{i}", True) for i in range(25)))
    await store.set_like(second.id, "u1", True)

    assert await store.count_likes(first.id) == 25
    assert await store.count_likes(second.id) == 1
    assert not await store.has_liked(second.id, "u2")


async def test_comments_are_listed_newest_first_in_pages(store: Store) -> None:
    video = await store.create_video("u1", "v", status=VideoStatus.READY)
    other = await store.create_video("u1", "w", status=VideoStatus.READY)
    added = [(await store.add_comment(video.id, f"u{i % 3}", f"c{i}", None)) for i in range(7)]
    await store.add_comment(other.id, "u1", "elsewhere", None)

    comments = [r.comment for r in added]
    assert not any(r.duplicate for r in added)
    assert [c.id for c in comments] == sorted(c.id for c in comments)
    first = await store.list_comments(video.id, limit=3, before=None)
    second = await store.list_comments(video.id, limit=3, before=first[-1].id)
    third = await store.list_comments(video.id, limit=3, before=second[-1].id)
    assert [c.text for c in first + second + third] == [f"c{i}" for i in range(6, -1, -1)]
    assert first[0] == comments[-1]
    assert (first[0].video_id, first[0].author, first[0].deleted) == (video.id, "u0", False)
    assert abs(first[0].ts - time.time() * 1000) < 60_000
    assert await store.get_comment(video.id, comments[2].id) == comments[2]
    assert await store.get_comment(other.id, comments[2].id) is None


async def test_a_deleted_comment_is_gone_from_pages_and_deleted_once(store: Store) -> None:
    video = await store.create_video("u1", "v", status=VideoStatus.READY)
    comments = [(await store.add_comment(video.id, "u2", f"c{i}", None)).comment for i in range(5)]

    assert await store.delete_comment(video.id, comments[3].id)
    assert not await store.delete_comment(video.id, comments[3].id)
    assert not await store.delete_comment(video.id, "01ZZZZZZZZZZZZZZZZZZZZZZZZ")
    assert await store.delete_comment(video.id, comments[4].id)

    assert await store.get_comment(video.id, comments[3].id) is None
    page = await store.list_comments(video.id, limit=2, before=None)
    assert [c.text for c in page] == ["c2", "c1"]
    # A cursor stays valid when the comment it names is deleted.
    assert [
        c.text for c in await store.list_comments(video.id, limit=5, before=comments[3].id)
    ] == [
        "c2",
        "c1",
        "c0",
    ]


async def test_a_repeated_client_id_returns_the_first_comment(store: Store) -> None:
    video = await store.create_video("u1", "v", status=VideoStatus.READY)
    first = await store.add_comment(video.id, "u2", "hello", "c-1")

    again = await store.add_comment(video.id, "u2", "hello, edited", "c-1")
    other_author = await store.add_comment(video.id, "u3", "hello", "c-1")

    assert again.duplicate
    assert again.comment == first.comment
    assert first.comment.client_msg_id == "c-1"
    assert not other_author.duplicate
    assert len(await store.list_comments(video.id, limit=10, before=None)) == 2
    assert await store.delete_comment(video.id, first.comment.id)
    after_delete = await store.add_comment(video.id, "u2", "hello", "c-1")
    assert after_delete.duplicate
    assert (after_delete.comment.id, after_delete.comment.deleted) == (first.comment.id, True)
    assert after_delete.comment.text == ""


async def test_saved_totals_apply_only_over_a_lower_version(make_store: MakeStore) -> None:
    node_a, node_b = await make_store(), await make_store()
    video = await node_a.create_video("u1", "v", status=VideoStatus.READY)
    other = await node_a.create_video("u1", "w", status=VideoStatus.READY)

    await node_a.save_video_counts(
        {video.id: VideoCounts(5, 2, 1, 10), other.id: VideoCounts(1, 0, 0, 1)}
    )
    await node_b.save_video_counts({video.id: VideoCounts(3, 1, 1, 7)})  # late: ignored
    await node_b.save_video_counts({video.id: VideoCounts(5, 2, 1, 10)})  # repeated: harmless
    await node_b.save_video_counts({"missing": VideoCounts(1, 1, 1, 1)})
    await node_b.save_video_counts({})

    stored = await node_b.get_video(video.id)
    assert stored is not None
    assert stored.counts == VideoCounts(5, 2, 1, 10)
    assert (await node_a.get_video("missing")) is None
    await node_a.save_video_counts({video.id: VideoCounts(6, 2, 1, 11, views=40, watch_ms=9500)})
    again = await node_b.get_video(video.id)
    assert again is not None
    assert again.counts == VideoCounts(6, 2, 1, 11, views=40, watch_ms=9500)
    second = await node_a.get_video(other.id)
    assert second is not None
    assert second.counts.likes == 1


# -- follows, blocks, posts and feeds ----------------------------------------------------------


async def test_a_follow_changes_once_and_moves_both_totals(store: Store) -> None:
    assert await store.follow("ann", "bob")
    assert not await store.follow("ann", "bob")
    assert await store.follow("cid", "bob")
    assert await store.is_following("ann", "bob")
    assert not await store.is_following("bob", "ann")
    assert await store.follow_counts("bob") == FollowCounts(followers=2, following=0)
    assert await store.follow_counts("ann") == FollowCounts(followers=0, following=1)

    assert await store.unfollow("ann", "bob")
    assert not await store.unfollow("ann", "bob")
    assert not await store.is_following("ann", "bob")
    assert await store.follow_counts("bob") == FollowCounts(followers=1, following=0)
    assert await store.follow_counts("ann") == FollowCounts()
    assert await store.follow_counts("nobody") == FollowCounts()


async def test_the_same_follow_on_two_nodes_at_once_changes_once(make_store: MakeStore) -> None:
    one, two = await make_store(), await make_store()
    results = await asyncio.gather(*(s.follow("ann", "bob") for s in (one, two, one, two)))
    assert sorted(results) == [False, False, False, True]
    assert await two.follow_counts("bob") == FollowCounts(followers=1)


async def test_followers_and_following_are_listed_in_id_order_in_pages(store: Store) -> None:
    fans = [f"fan{i:02d}" for i in range(7)]
    for fan in reversed(fans):
        await store.follow(fan, "star")
        await store.follow("star", fan)
    first = await store.list_followers("star", limit=3, after=None)
    second = await store.list_followers("star", limit=3, after=first[-1])
    third = await store.list_followers("star", limit=3, after=second[-1])
    assert first + second + third == fans
    assert await store.list_following("star", limit=100, after="fan04") == fans[5:]
    assert await store.list_following("fan00", limit=10, after=None) == ["star"]
    assert await store.list_followers("nobody", limit=10, after=None) == []


async def test_a_block_removes_follows_both_ways(store: Store) -> None:
    await store.follow("ann", "bob")
    await store.follow("bob", "ann")
    assert await store.block("ann", "bob")
    assert not await store.block("ann", "bob")
    assert await store.is_blocked("ann", "bob")
    assert not await store.is_blocked("bob", "ann")
    assert not await store.is_following("ann", "bob")
    assert not await store.is_following("bob", "ann")
    assert await store.follow_counts("ann") == FollowCounts()
    assert await store.follow_counts("bob") == FollowCounts()

    assert await store.unblock("ann", "bob")
    assert not await store.unblock("ann", "bob")
    assert not await store.is_blocked("ann", "bob")


async def test_feed_items_are_listed_newest_first_in_pages_once_each(store: Store) -> None:
    posted = [FeedItem(ids.IdGenerator().new(), f"v{i}", "author") for i in range(5)]
    later = int(time.time()) + 3600
    for item in posted:
        await store.add_feed_items(["ann", "bob"], item, expires_at=later)
    await store.add_feed_items(["ann"], posted[2], expires_at=later)  # written twice: kept once

    newest_first = sorted(posted, key=lambda i: i.id, reverse=True)
    first = await store.list_feed("ann", limit=3, before=None)
    rest = await store.list_feed("ann", limit=3, before=first[-1].id)
    assert first + rest == newest_first
    assert await store.list_feed("bob", limit=10, before=None) == newest_first
    assert await store.list_feed("cid", limit=10, before=None) == []


async def test_expired_feed_items_are_not_listed(store: Store) -> None:
    old = FeedItem(ids.IdGenerator().new(), "v-old", "author")
    new = FeedItem(ids.IdGenerator().new(), "v-new", "author")
    await store.add_feed_items(["ann"], old, expires_at=int(time.time()) - 1)
    await store.add_feed_items(["ann"], new, expires_at=int(time.time()) + 3600)
    assert await store.list_feed("ann", limit=10, before=None) == [new]


async def test_posts_are_listed_per_author_and_wide_authors_per_follower(store: Store) -> None:
    generator = ids.IdGenerator()
    narrow = FeedItem(generator.new(), "v1", "nina")
    wide = [FeedItem(generator.new(), f"w{i}", "walt") for i in range(3)]
    assert await store.add_post(narrow, wide=False)
    for item in wide:
        assert await store.add_post(item, wide=True)
    assert not await store.add_post(wide[0], wide=True)  # a repeat
    # Each author posts a video once, whatever the item's id.
    assert not await store.add_post(FeedItem(generator.new(), "v1", "nina"), wide=False)
    for author in ("nina", "walt", "zed"):
        await store.follow("ann", author)

    assert await store.list_posts("walt", limit=2, before=None) == [wide[2], wide[1]]
    assert await store.list_posts("walt", limit=5, before=wide[1].id) == [wide[0]]
    assert await store.list_posts("nina", limit=5, before=None) == [narrow]
    assert await store.wide_followees("ann") == ["walt"]
    assert await store.wide_followees("bob") == []


# -- push devices ------------------------------------------------------------------------------


async def test_a_device_is_registered_once_per_token_and_refreshed(store: Store) -> None:
    first = await store.register_device("ann", "apns", "tok-1", "1.0", "en-GB", limit=5)
    assert first.created
    assert first.dropped == ()
    device = first.device
    assert ids.is_valid(device.id)
    assert (device.user_id, device.platform, device.token) == ("ann", "apns", "tok-1")
    assert (device.app_version, device.locale, device.endpoint) == ("1.0", "en-GB", None)
    assert device.created_at == device.seen_at

    await asyncio.sleep(0.002)
    again = await store.register_device("ann", "apns", "tok-1", "1.1", "fr-FR", limit=5)
    assert not again.created
    assert again.device.id == device.id
    assert (again.device.app_version, again.device.locale) == ("1.1", "fr-FR")
    assert again.device.created_at == device.created_at
    assert again.device.seen_at > device.seen_at
    # The same token on the other platform is another device.
    other = await store.register_device("ann", "fcm", "tok-1", "1.0", "en", limit=5)
    assert other.created
    assert other.device.id != device.id

    listed = await store.list_devices("ann")
    assert [d.id for d in listed] == [device.id, other.device.id]
    assert listed[0] == again.device
    assert await store.list_devices("bob") == []


async def test_a_token_registered_by_another_user_moves_to_them(store: Store) -> None:
    ann = await store.register_device("ann", "fcm", "shared", "1", "en", limit=5)
    bob = await store.register_device("bob", "fcm", "shared", "2", "de", limit=5)
    assert bob.created
    assert bob.device.id != ann.device.id
    assert await store.list_devices("ann") == []
    assert [d.id for d in await store.list_devices("bob")] == [bob.device.id]
    # And back again: a fresh device for ann, none left for bob.
    back = await store.register_device("ann", "fcm", "shared", "1", "en", limit=5)
    assert back.created
    assert await store.list_devices("bob") == []
    assert [d.id for d in await store.list_devices("ann")] == [back.device.id]


async def test_devices_beyond_the_bound_drop_the_least_recently_registered(store: Store) -> None:
    made = []
    for i in range(3):
        made.append(
            (await store.register_device("ann", "apns", f"t{i}", "1", "en", limit=3)).device
        )
        await asyncio.sleep(0.002)
    await store.register_device("ann", "apns", "t0", "1", "en", limit=3)  # t0 seen again
    await asyncio.sleep(0.002)

    fourth = await store.register_device("ann", "apns", "t3", "1", "en", limit=3)
    assert fourth.created
    assert fourth.dropped == (made[1].id,)
    left = await store.list_devices("ann")
    assert [d.token for d in left] == ["t0", "t2", "t3"]
    # The dropped token is free: registering it again makes a new device (and drops t2).
    await asyncio.sleep(0.002)
    back = await store.register_device("ann", "apns", "t1", "1", "en", limit=3)
    assert back.created
    assert back.device.id != made[1].id
    assert back.dropped == (made[2].id,)
    assert len(await store.list_devices("ann")) == 3


async def test_a_device_is_deleted_by_its_owner_only_and_remembers_its_endpoint(
    store: Store,
) -> None:
    device = (await store.register_device("ann", "apns", "tok", "1", "en", limit=5)).device
    assert not await store.set_device_endpoint("bob", device.id, "arn:x")
    assert await store.set_device_endpoint("ann", device.id, "arn:aws:sns:endpoint/1")
    (listed,) = await store.list_devices("ann")
    assert listed.endpoint == "arn:aws:sns:endpoint/1"
    again = await store.register_device("ann", "apns", "tok", "2", "en", limit=5)
    assert again.device.endpoint == "arn:aws:sns:endpoint/1"

    assert not await store.delete_device("bob", device.id)
    assert await store.delete_device("ann", device.id)
    assert not await store.delete_device("ann", device.id)
    assert not await store.set_device_endpoint("ann", device.id, "arn:y")
    assert await store.list_devices("ann") == []
    # Its token is free for anyone now.
    assert (await store.register_device("bob", "apns", "tok", "1", "en", limit=5)).created


async def test_concurrent_registrations_of_one_token_make_one_device(
    make_store: MakeStore,
) -> None:
    node_a, node_b = await make_store(), await make_store()
    results = await asyncio.gather(
        *(
            (node_a if i % 2 else node_b).register_device("ann", "fcm", "race", "1", "en", limit=5)
            for i in range(6)
        )
    )
    devices = await node_a.list_devices("ann")
    assert len(devices) == 1
    assert {r.device.id for r in results} == {devices[0].id}


# -- push outbox -------------------------------------------------------------------------------


async def add(
    store: Store,
    users: list[str],
    conversation: str,
    sender: str,
    text: str,
    offset: int,
    *,
    now: int = 1000,
    max_pending: int = 10,
) -> list[str]:
    return await store.add_notifications(
        users,
        conversation,
        sender,
        text,
        offset,
        now=now,
        due_at=now + 500,
        max_pending=max_pending,
    )


async def test_messages_of_one_conversation_fold_into_one_notification(store: Store) -> None:
    assert await add(store, ["bob", "cid"], "group:g1", "ann", "hi", 1) == []
    assert await add(store, ["bob"], "group:g1", "dan", "there", 2, now=1200) == []
    assert await add(store, ["bob"], "dm:ann:bob", "ann", "psst", 7) == []

    first, second = await store.pending_notifications("bob")
    assert (first.conversation, first.count, first.sender, first.preview) == (
        "dm:ann:bob",
        1,
        "ann",
        "psst",
    )
    assert (second.conversation, second.count, second.sender, second.preview) == (
        "group:g1",
        2,
        "dan",
        "there",
    )
    assert (second.last_offset, second.first_at, second.due_at) == (2, 1000, 1500)
    assert second.version == 2
    assert second.lease is None
    (cid,) = await store.pending_notifications("cid")
    assert (cid.count, cid.sender) == (1, "ann")
    assert await store.pending_notifications("ann") == []


async def test_a_user_with_max_pending_notifications_is_refused_a_new_one(store: Store) -> None:
    for i in range(3):
        assert (
            await add(store, ["bob", "cid"], f"dm:a{i}:bob", f"a{i}", "x", 1, max_pending=3) == []
        )
    assert await add(store, ["bob"], "dm:a9:bob", "a9", "x", 1, max_pending=3) == ["bob"]
    # Folding into one of the three is not a new one.
    assert await add(store, ["bob"], "dm:a0:bob", "a0", "again", 2, max_pending=3) == []
    assert len(await store.pending_notifications("bob")) == 3


async def test_due_notifications_are_claimed_once_until_the_lease_ends(
    make_store: MakeStore,
) -> None:
    node_a, node_b = await make_store(), await make_store()
    await add(node_a, ["bob"], "dm:ann:bob", "ann", "one", 1)
    await add(node_a, ["cid"], "dm:ann:cid", "ann", "two", 1)
    assert await node_a.claim_notifications(now=1499, lease_until=5000, limit=10) == []

    claims = await asyncio.gather(
        node_a.claim_notifications(now=1500, lease_until=5000, limit=10),
        node_b.claim_notifications(now=1500, lease_until=5000, limit=10),
    )
    claimed = [c for page in claims for c in page]
    assert sorted(c.user_id for c in claimed) == ["bob", "cid"]
    assert all(c.lease for c in claimed)
    assert await node_b.claim_notifications(now=4999, lease_until=9000, limit=10) == []
    # After the lease, another node may take it; the first claim's lease no longer counts.
    (again,) = await node_b.claim_notifications(now=5001, lease_until=9000, limit=1)
    stale = next(c for c in claimed if c.user_id == again.user_id)
    assert again.lease != stale.lease
    assert not await node_a.complete_notification(stale, due_at=6000)
    assert not await node_a.release_notification(stale, due_at=6000, failed=True)
    assert await node_b.complete_notification(again, due_at=6000)
    assert await node_b.pending_notifications(again.user_id) == []


async def test_messages_folded_in_during_a_claim_stay_pending(store: Store) -> None:
    await add(store, ["bob"], "dm:ann:bob", "ann", "one", 1)
    await add(store, ["bob"], "dm:ann:bob", "ann", "two", 2)
    (claimed,) = await store.claim_notifications(now=2000, lease_until=9000, limit=10)
    assert claimed.count == 2
    await add(store, ["bob"], "dm:ann:bob", "ann", "three", 3, now=2100)

    assert await store.complete_notification(claimed, due_at=2600)
    (left,) = await store.pending_notifications("bob")
    assert (left.count, left.preview, left.last_offset) == (1, "three", 3)
    assert (left.due_at, left.lease) == (2600, None)
    assert await store.claim_notifications(now=2599, lease_until=9000, limit=10) == []
    (next_claim,) = await store.claim_notifications(now=2600, lease_until=9000, limit=10)
    assert next_claim.count == 1
    assert await store.complete_notification(next_claim, due_at=0)
    assert await store.pending_notifications("bob") == []


async def test_a_released_notification_is_due_again_and_counts_failures(store: Store) -> None:
    await add(store, ["bob"], "dm:ann:bob", "ann", "one", 1)
    (claimed,) = await store.claim_notifications(now=2000, lease_until=9000, limit=10)
    assert await store.release_notification(claimed, due_at=3000, failed=True)
    assert await store.claim_notifications(now=2999, lease_until=9000, limit=10) == []
    (again,) = await store.claim_notifications(now=3000, lease_until=9000, limit=10)
    assert again.attempts == 1
    assert await store.release_notification(again, due_at=3000, failed=False)
    (third,) = await store.claim_notifications(now=3000, lease_until=9000, limit=10)
    assert third.attempts == 1


async def test_push_slots_are_capped_per_user_and_window(make_store: MakeStore) -> None:
    node_a, node_b = await make_store(), await make_store()
    taken = await asyncio.gather(
        *((node_a if i % 2 else node_b).take_push_slot("bob", 100, 3) for i in range(6))
    )
    assert sorted(taken) == [False, False, False, True, True, True]
    assert await node_a.take_push_slot("cid", 100, 3)
    assert await node_a.take_push_slot("bob", 101, 3)


async def test_push_preferences_default_to_everything_and_are_replaced_whole(
    make_store: MakeStore,
) -> None:
    node_a, node_b = await make_store(), await make_store()
    assert await node_a.get_push_preferences("bob") == PushPreferences()
    quiet = QuietHours(start=22 * 60, end=7 * 60, zone="Europe/Paris")
    await node_a.set_push_preferences(
        "bob", kinds_off=frozenset({"follow", "comment"}), quiet=quiet
    )
    found = await node_b.get_push_preferences("bob")
    assert (found.kinds_off, found.quiet, found.mutes) == (
        frozenset({"follow", "comment"}),
        quiet,
        (),
    )
    await node_b.set_push_preferences("bob", kinds_off=frozenset(), quiet=None)
    assert await node_a.get_push_preferences("bob") == PushPreferences()
    assert await node_a.get_push_preferences("cid") == PushPreferences()


async def test_mutes_are_one_per_conversation_and_bounded_per_user(store: Store) -> None:
    assert await store.mute_conversation("bob", "group:B", None, now=1000, limit=2)
    assert await store.mute_conversation("bob", "dm:a:bob", 5000, now=1000, limit=2)
    # Muting again moves the end, at the bound too.
    assert await store.mute_conversation("bob", "dm:a:bob", 9000, now=1000, limit=2)
    assert not await store.mute_conversation("bob", "group:C", None, now=1000, limit=2)
    assert await store.mute_conversation("cid", "group:C", None, now=1000, limit=2)
    found = await store.get_push_preferences("bob")
    assert found.mutes == (Mute("dm:a:bob", 9000), Mute("group:B", None))
    # Settings leave mutes alone.
    await store.set_push_preferences("bob", kinds_off=frozenset({"message"}), quiet=None)
    assert (await store.get_push_preferences("bob")).mutes == found.mutes
    # An ended mute no longer counts against the bound: the next mute deletes it.
    assert await store.mute_conversation("bob", "group:C", 20_000, now=10_000, limit=2)
    found = await store.get_push_preferences("bob")
    assert found.mutes == (Mute("group:B", None), Mute("group:C", 20_000))
    assert found.kinds_off == frozenset({"message"})
    assert await store.unmute_conversation("bob", "group:B")
    assert not await store.unmute_conversation("bob", "group:B")
    assert (await store.get_push_preferences("bob")).mutes == (Mute("group:C", 20_000),)
    assert (await store.get_push_preferences("cid")).mutes == (Mute("group:C", None),)
