"""The push decider on its own: its queue's bound, and who it writes to the outbox."""

from __future__ import annotations

from typing import Any

from handlers.base import UserStatus
from handlers.notify import OfflineNotifier, kind_of, mentioned_names, muted_by
from storage.base import User
from storage.push import Mute, PushPreferences, QuietHours


class FakeStore:
    """What the decider reads and writes, recorded."""

    def __init__(self, members: list[str], with_devices: set[str], full: set[str]) -> None:
        self.members = members
        self.with_devices = with_devices
        self.full = full
        self.added: list[tuple[list[str], str, str, str, int]] = []
        self.due: list[int] = []
        self.device_reads = 0
        self.preferences: dict[str, PushPreferences] = {}
        self.usernames: dict[str, str] = {}
        self.delay_ms = 2000
        self.name_reads = 0

    async def get_push_preferences(self, user_id: str) -> PushPreferences:
        return self.preferences.get(user_id, PushPreferences())

    async def get_user_by_username(self, username: str) -> User | None:
        self.name_reads += 1
        user_id = self.usernames.get(username)
        return None if user_id is None else User(user_id, username, "", 0)

    async def list_members(self, group_id: str, *, limit: int) -> list[str]:
        return self.members[:limit]

    async def list_devices(self, user_id: str) -> list[str]:
        self.device_reads += 1
        return ["d"] if user_id in self.with_devices else []

    async def add_notifications(
        self, users: list[str], conversation: str, sender: str, preview: str, offset: int, **kw: Any
    ) -> list[str]:
        self.added.append((users, conversation, sender, preview, offset))
        self.due.append(kw["due_at"] - kw["now"])
        assert kw["due_at"] - kw["now"] >= self.delay_ms
        return [user for user in users if user in self.full]


class FakePresence:
    def __init__(self, online: set[str]) -> None:
        self.online = online

    async def statuses(self, users: list[str]) -> dict[str, UserStatus]:
        return {user: UserStatus(user in self.online, None) for user in users}

    async def here(self, channel: str, limit: int) -> tuple[list[str], int]:
        return [], 0


def notifier(store: FakeStore, presence: FakePresence, **kw: Any) -> OfflineNotifier:
    return OfflineNotifier(store, presence, delay=2.0, **kw)  # type: ignore[arg-type]


async def test_offline_members_with_devices_but_the_sender_are_written() -> None:
    store = FakeStore(["ann", "bob", "cid", "dan", "eve"], {"bob", "cid", "eve"}, {"eve"})
    decider = notifier(store, FakePresence({"cid"}))
    written = await decider.decide("group:g1", "ann", 7, b'{"text": "hi all"}')
    assert store.added == [(["bob", "eve"], "group:g1", "ann", "hi all", 7)]
    assert written == 1  # eve was refused: she has max_pending pending
    stats = decider.stats
    assert (stats.online, stats.no_device, stats.refused, stats.decided) == (1, 1, 1, 1)
    # Whether a user has a device is remembered for a moment: no second read.
    reads = store.device_reads
    await decider.decide("group:g1", "ann", 8, b"{}")
    assert store.device_reads == reads


async def test_a_dm_notifies_the_other_user_and_rooms_notify_no_one() -> None:
    store = FakeStore([], {"ann", "bob"}, set())
    decider = notifier(store, FakePresence(set()))
    await decider.decide("dm:ann:bob", "bob", 1, b'{"text": "yo"}')
    assert store.added == [(["ann"], "dm:ann:bob", "bob", "yo", 1)]
    assert not decider.message("room:lobby", "ann", 1, b"{}")
    assert not decider.message("video:v1", "ann", 1, b"{}")
    assert decider.stats.messages == 0
    assert await decider.decide("room:lobby", "ann", 1, b"{}") == 0


async def test_the_queue_drops_the_newest_beyond_its_capacity_and_drains_at_close() -> None:
    store = FakeStore([], {"ann", "bob"}, set())
    decider = notifier(store, FakePresence(set()), capacity=2)
    assert decider.message("dm:ann:bob", "bob", 1, b"{}")
    assert decider.message("dm:ann:bob", "bob", 2, b"{}")
    assert not decider.message("dm:ann:bob", "bob", 3, b"{}")
    assert (decider.stats.messages, decider.stats.dropped, decider.waiting) == (2, 1, 2)
    await decider.start()
    await decider.close(timeout=5)
    assert [offset for *_, offset in store.added] == [1, 2]
    assert decider.waiting == 0


async def test_a_failed_decision_is_counted_and_the_next_one_still_runs() -> None:
    class Failing(FakeStore):
        async def add_notifications(self, users: list[str], *args: Any, **kw: Any) -> list[str]:
            if not self.added:
                self.added.append((users, "", "", "", 0))
                raise OSError("the store is down")
            return await super().add_notifications(users, *args, **kw)

    store = Failing([], {"ann", "bob"}, set())
    decider = notifier(store, FakePresence(set()))
    await decider.start()
    decider.message("dm:ann:bob", "bob", 1, b"{}")
    decider.message("dm:ann:bob", "bob", 2, b"{}")
    assert await decider.wait_idle(5)
    await decider.close(timeout=1)
    assert decider.stats.failed == 1
    assert store.added[-1][-1] == 2


def test_keys_name_their_kind_and_the_conversation_that_mutes_them() -> None:
    assert [kind_of(k) for k in ("dm:a:b", "group:G", "mention:group:G", "follow:u")] == [
        "message",
        "message",
        "mention",
        "follow",
    ]
    assert [kind_of(k) for k in ("comment:V", "video_ready:V", "video_rejected:V")] == [
        "comment",
        "video_ready",
        "video_rejected",
    ]
    assert [muted_by(k) for k in ("dm:a:b", "mention:group:G", "follow:u", "comment:V")] == [
        "dm:a:b",
        "group:G",
        None,
        None,
    ]


def test_mentions_are_distinct_lowercased_names_not_addresses() -> None:
    text = "@Bob and @cid, ask @bob. mail ann@example.com or @x; (@dan_1.)"
    assert mentioned_names(text) == ["bob", "cid", "dan_1"]
    assert len(mentioned_names(" ".join(f"@user{i}" for i in range(50)))) == 20


async def test_a_mentioned_member_gets_a_mention_instead_of_the_message() -> None:
    store = FakeStore(["ann", "bob", "cid"], with_devices={"bob", "cid"}, full=set())
    store.usernames = {"bob": "bob", "zed": "zed"}  # zed is no member: mentions no one
    decider = notifier(store, FakePresence(set()))
    assert await decider.decide("group:g1", "ann", 4, b'{"text": "@bob @zed look"}') == 2
    assert sorted((users, key) for users, key, *_ in store.added) == [
        (["bob"], "mention:group:g1"),
        (["cid"], "group:g1"),
    ]
    assert decider.stats.mentions == 1


async def test_mentions_off_fall_back_to_the_message_and_a_mute_silences_both() -> None:
    store = FakeStore(["ann", "bob", "cid"], with_devices={"bob", "cid"}, full=set())
    store.usernames = {"bob": "bob", "cid": "cid"}
    store.preferences["bob"] = PushPreferences(kinds_off=frozenset({"mention"}))
    store.preferences["cid"] = PushPreferences(mutes=(Mute("group:g1", None),))
    decider = notifier(store, FakePresence(set()))
    assert await decider.decide("group:g1", "ann", 4, b'{"text": "@bob @cid look"}') == 1
    assert [(users, key) for users, key, *_ in store.added] == [(["bob"], "group:g1")]
    assert decider.stats.suppressed == 1


async def test_a_kind_turned_off_and_an_ended_mute() -> None:
    store = FakeStore(["ann", "bob", "cid"], with_devices={"bob", "cid"}, full=set())
    store.preferences["bob"] = PushPreferences(kinds_off=frozenset({"message"}))
    store.preferences["cid"] = PushPreferences(mutes=(Mute("group:g1", 1000),))  # ended
    decider = notifier(store, FakePresence(set()))
    assert await decider.decide("group:g1", "ann", 4, b'{"text": "hi"}') == 1
    assert [(users, key) for users, key, *_ in store.added] == [(["cid"], "group:g1")]


async def test_follows_comments_and_videos_have_their_keys_and_one_recipient() -> None:
    store = FakeStore([], with_devices={"bob"}, full=set())
    decider = notifier(store, FakePresence(set()))
    await decider.start()
    assert decider.follow("ann", "bob")
    assert decider.comment("bob", "V1", "ann", "  nice\n video ")
    assert not decider.comment("bob", "V1", "bob", "my own")
    assert decider.video("bob", "V1", True, "My title")
    assert decider.video("bob", "V2", False, "breaks the rules")
    assert await decider.wait_idle(5)
    await decider.close(1)
    assert store.added == [
        (["bob"], "follow:bob", "ann", "", 0),
        (["bob"], "comment:V1", "ann", "nice video", 0),
        (["bob"], "video_ready:V1", "system", "My title", 0),
        (["bob"], "video_rejected:V2", "system", "breaks the rules", 0),
    ]


async def test_quiet_hours_make_a_notification_due_at_their_end() -> None:
    # 23:00 UTC on 2026-01-01; quiet 22:00-07:00 in UTC+01:00 (midnight there): ends in 7 h.
    now = 1767308400.0
    store = FakeStore(["ann", "bob"], with_devices={"bob"}, full=set())
    store.preferences["bob"] = PushPreferences(quiet=QuietHours(22 * 60, 7 * 60, "+01:00"))
    decider = notifier(store, FakePresence(set()), clock=lambda: now)
    assert await decider.decide("dm:ann:bob", "ann", 1, b'{"text": "hi"}') == 1
    assert store.due == [7 * 3600 * 1000]
    assert decider.stats.held == 1


async def test_names_are_not_looked_up_when_no_member_can_be_told() -> None:
    store = FakeStore(["ann", "bob", "cid"], with_devices={"cid"}, full=set())
    store.usernames = {"bob": "bob"}
    decider = notifier(store, FakePresence({"cid"}))  # bob has no device, cid is online
    assert await decider.decide("group:g1", "ann", 4, b'{"text": "@bob @cid"}') == 0
    assert store.name_reads == 0
    assert store.added == []
