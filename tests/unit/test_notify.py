"""The push decider on its own: its queue's bound, and who it writes to the outbox."""

from __future__ import annotations

from typing import Any

from handlers.base import UserStatus
from handlers.notify import OfflineNotifier


class FakeStore:
    """What the decider reads and writes, recorded."""

    def __init__(self, members: list[str], with_devices: set[str], full: set[str]) -> None:
        self.members = members
        self.with_devices = with_devices
        self.full = full
        self.added: list[tuple[list[str], str, str, str, int]] = []
        self.device_reads = 0

    async def list_members(self, group_id: str, *, limit: int) -> list[str]:
        return self.members[:limit]

    async def list_devices(self, user_id: str) -> list[str]:
        self.device_reads += 1
        return ["d"] if user_id in self.with_devices else []

    async def add_notifications(
        self, users: list[str], conversation: str, sender: str, preview: str, offset: int, **kw: Any
    ) -> list[str]:
        self.added.append((users, conversation, sender, preview, offset))
        assert kw["due_at"] - kw["now"] == 2000
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
