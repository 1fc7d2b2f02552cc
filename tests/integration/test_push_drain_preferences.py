"""The drainer applies preferences again when a notification is due: the real SQLite store, the
file sink and a settable clock (no waiting for quiet hours to end)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.push.drain import Drainer
from gateway.push.files import JsonLines
from storage.push import QuietHours
from storage.sqlite import SQLiteStore
from tests.integration.test_push import sent


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "push.db")
    await opened.open()
    yield opened
    await opened.close()


class Clock:
    def __init__(self, at: int) -> None:
        self.ms = at

    def __call__(self) -> float:
        return self.ms / 1000


async def pending(store: SQLiteStore, key: str, at: int, sender: str = "ann") -> None:
    await store.add_notifications(
        ["bob"], key, sender, "hello", 1, now=at, due_at=at, max_pending=10
    )


async def test_a_conversation_muted_or_a_kind_turned_off_after_the_decision_sends_nothing(
    store: SQLiteStore, tmp_path: Path
) -> None:
    await store.register_device("bob", "apns", "b" * 64, "1", "en", limit=5)
    at = ms("2026-03-02T12:00:00")
    await pending(store, "dm:ann:bob", at)
    await pending(store, "follow:bob", at)
    await pending(store, "group:G", at)
    await store.mute_conversation("bob", "dm:ann:bob", None, now=at, limit=10)
    await store.set_push_preferences("bob", kinds_off=frozenset({"follow"}), quiet=None)
    drainer = Drainer(store, JsonLines(tmp_path / "push"), clock=Clock(at + 1000))

    assert await drainer.drain_once() == 3
    assert await store.pending_notifications("bob") == []
    assert drainer.stats.suppressed == 2
    assert [line["conversation"] for line in sent(tmp_path / "push")] == ["group:G"]
    await drainer.sink.close()


async def test_quiet_hours_started_after_the_decision_hold_it_to_their_end_still_folding(
    store: SQLiteStore, tmp_path: Path
) -> None:
    await store.register_device("bob", "apns", "b" * 64, "1", "en", limit=5)
    # 23:30 in Paris (UTC+1 in winter); quiet 23:00-06:30 there.
    at = ms("2026-01-10T22:30:00")
    await pending(store, "comment:V", at, sender="cid")
    quiet = QuietHours(23 * 60, 6 * 60 + 30, "Europe/Paris")
    await store.set_push_preferences("bob", kinds_off=frozenset(), quiet=quiet)
    clock = Clock(at + 1000)
    drainer = Drainer(store, JsonLines(tmp_path / "push"), clock=clock, max_age=3600)

    assert await drainer.drain_once() == 1
    (held,) = await store.pending_notifications("bob")
    end = ms("2026-01-11T05:30:00")
    assert (held.due_at, held.lease, held.attempts) == (end, None, 0)
    assert drainer.stats.quiet == 1
    await pending(store, "comment:V", at + 60_000, sender="dan")  # folds in while held
    clock.ms = end - 1000
    assert await drainer.drain_once() == 0  # not due yet
    clock.ms = end + 1000
    assert await drainer.drain_once() == 1
    (line,) = sent(tmp_path / "push")
    assert (line["kind"], line["count"], line["title"]) == (
        "comment",
        2,
        "2 new comments on your video",
    )
    # Seven hours after its first comment, beyond max_age: it aged from the quiet hours' end.
    assert drainer.stats.expired == 0
    await drainer.sink.close()


async def test_a_notification_not_held_by_quiet_hours_still_expires(
    store: SQLiteStore, tmp_path: Path
) -> None:
    await store.register_device("bob", "apns", "b" * 64, "1", "en", limit=5)
    quiet = QuietHours(23 * 60, 6 * 60 + 30, "Europe/Paris")
    await store.set_push_preferences("bob", kinds_off=frozenset(), quiet=quiet)
    at = ms("2026-01-10T10:00:00")  # 11:00 in Paris
    await pending(store, "follow:bob", at)
    drainer = Drainer(
        store, JsonLines(tmp_path / "push"), clock=Clock(at + 3_700_000), max_age=3600
    )
    assert await drainer.drain_once() == 1
    assert drainer.stats.expired == 1
    assert sent(tmp_path / "push") == []
    await drainer.sink.close()
