"""The SQLite side of :class:`storage.push.NotificationStore`: ``push_outbox`` and ``push_caps``.

Each call is one write transaction (``BEGIN IMMEDIATE``), so folding, claiming and completing
are atomic across the processes sharing the file; the per-user bound is exact here.
"""

from __future__ import annotations

import secrets

from storage.push import Notification
from storage.sqlite.base import SQLiteBase, immediate

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS push_outbox (
    user_id TEXT NOT NULL,
    conversation TEXT NOT NULL,
    count INTEGER NOT NULL,
    sender TEXT NOT NULL,
    preview TEXT NOT NULL,
    last_offset INTEGER NOT NULL,
    first_at INTEGER NOT NULL,
    due_at INTEGER NOT NULL,
    version INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease TEXT,
    lease_until INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, conversation)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS push_outbox_due ON push_outbox (due_at);
CREATE TABLE IF NOT EXISTS push_caps (
    user_id TEXT NOT NULL,
    minute INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (user_id, minute)
) WITHOUT ROWID;
"""

_COLUMNS = (
    "user_id, conversation, count, sender, preview, last_offset, first_at, due_at, version,"
    " attempts, lease"
)


def _notification(row: tuple[object, ...]) -> Notification:
    return Notification(*row)  # type: ignore[arg-type]


class SQLiteOutbox(SQLiteBase):
    """:class:`storage.push.NotificationStore` on SQLite."""

    async def add_notifications(
        self,
        users: list[str],
        conversation: str,
        sender: str,
        preview: str,
        offset: int,
        *,
        now: int,
        due_at: int,
        max_pending: int,
    ) -> list[str]:
        def run() -> list[str]:
            refused: list[str] = []
            db = self._conn()
            with immediate(db):
                for user in dict.fromkeys(users):
                    folded = db.execute(
                        "UPDATE push_outbox SET count = count + 1, sender = ?, preview = ?,"
                        " last_offset = max(last_offset, ?), version = version + 1"
                        " WHERE user_id = ? AND conversation = ?",
                        (sender, preview, offset, user, conversation),
                    )
                    if folded.rowcount:
                        continue
                    (pending,) = db.execute(
                        "SELECT count(*) FROM push_outbox WHERE user_id = ?", (user,)
                    ).fetchone()
                    if pending >= max_pending:
                        refused.append(user)
                        continue
                    db.execute(
                        f"INSERT INTO push_outbox ({_COLUMNS})"
                        " VALUES (?, ?, 1, ?, ?, ?, ?, ?, 1, 0, NULL)",
                        (user, conversation, sender, preview, offset, now, due_at),
                    )
            return refused

        return await self._run(run)

    async def claim_notifications(
        self, *, now: int, lease_until: int, limit: int
    ) -> list[Notification]:
        def run() -> list[Notification]:
            db = self._conn()
            claimed: list[Notification] = []
            with immediate(db):
                rows = db.execute(
                    f"SELECT {_COLUMNS} FROM push_outbox"
                    " WHERE due_at <= ? AND lease_until < ? ORDER BY due_at LIMIT ?",
                    (now, now, limit),
                ).fetchall()
                for row in rows:
                    lease = secrets.token_hex(8)
                    db.execute(
                        "UPDATE push_outbox SET lease = ?, lease_until = ?"
                        " WHERE user_id = ? AND conversation = ?",
                        (lease, lease_until, row[0], row[1]),
                    )
                    claimed.append(_notification((*row[:-1], lease)))
            return claimed

        return await self._run(run)

    async def complete_notification(self, notification: Notification, *, due_at: int) -> bool:
        n = notification

        def run() -> bool:
            db = self._conn()
            with immediate(db):
                gone = db.execute(
                    "DELETE FROM push_outbox WHERE user_id = ? AND conversation = ?"
                    " AND lease = ? AND version = ?",
                    (n.user_id, n.conversation, n.lease, n.version),
                )
                if gone.rowcount:
                    return True
                kept = db.execute(
                    "UPDATE push_outbox SET count = max(1, count - ?), lease = NULL,"
                    " lease_until = 0, due_at = ?, first_at = ?, attempts = 0"
                    " WHERE user_id = ? AND conversation = ? AND lease = ?",
                    (n.count, due_at, due_at, n.user_id, n.conversation, n.lease),
                )
                return kept.rowcount == 1

        return await self._run(run)

    async def release_notification(
        self, notification: Notification, *, due_at: int, failed: bool
    ) -> bool:
        n = notification

        def run() -> bool:
            db = self._conn()
            with immediate(db):
                cursor = db.execute(
                    "UPDATE push_outbox SET lease = NULL, lease_until = 0, due_at = ?,"
                    " attempts = attempts + ? WHERE user_id = ? AND conversation = ? AND lease = ?",
                    (due_at, int(failed), n.user_id, n.conversation, n.lease),
                )
            return cursor.rowcount == 1

        return await self._run(run)

    async def pending_notifications(self, user_id: str) -> list[Notification]:
        def run() -> list[Notification]:
            rows = (
                self._conn()
                .execute(
                    f"SELECT {_COLUMNS} FROM push_outbox WHERE user_id = ? ORDER BY conversation",
                    (user_id,),
                )
                .fetchall()
            )
            return [_notification(row) for row in rows]

        return await self._run(run)

    async def take_push_slot(self, user_id: str, window: int, cap: int) -> bool:
        def run() -> bool:
            db = self._conn()
            with immediate(db):
                db.execute(
                    "DELETE FROM push_caps WHERE user_id = ? AND minute < ?", (user_id, window)
                )
                taken = db.execute(
                    "INSERT INTO push_caps (user_id, minute, count) VALUES (?, ?, 1)"
                    " ON CONFLICT (user_id, minute) DO UPDATE SET count = count + 1"
                    " WHERE count < ?",
                    (user_id, window, cap),
                )
            return taken.rowcount == 1

        return await self._run(run)
