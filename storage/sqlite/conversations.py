"""Read positions and conversation lists on SQLite (the ``conversations`` table).

One row per (user, DM or group channel): the read position, and ``list_key`` while the channel
is in the user's list. The rows follow from other writes, in the same transaction: an append
(:func:`note_append`, called by :mod:`storage.sqlite.messages`) and group membership
(:mod:`storage.sqlite.groups`); this module reads them and moves read positions.
"""

from __future__ import annotations

import sqlite3

from storage import ids
from storage.base import Conversation, ReadMark
from storage.conversations import dm_users, list_key
from storage.sqlite.base import SQLiteBase, chunks, immediate

CONVERSATION_SCHEMA = """-- One row per (user, DM or group channel): the read position, and list_key while the channel
-- is in the user's conversation list (NULL once they left a group).
CREATE TABLE IF NOT EXISTS conversations (
    user_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    last_read INTEGER NOT NULL DEFAULT 0,
    list_key TEXT,
    PRIMARY KEY (user_id, channel)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS conversations_by_list_key
    ON conversations (user_id, list_key) WHERE list_key IS NOT NULL;
"""


def note_append(
    db: sqlite3.Connection, channel: str, sender: str, offset: int, *, created: bool, ts: int
) -> None:
    """Keep conversation lists and the sender's read position in step with an append."""
    users = dm_users(channel)
    if created and users is not None:
        db.executemany(
            "INSERT INTO conversations (user_id, channel, last_read, list_key) VALUES (?, ?, 0, ?)"
            " ON CONFLICT (user_id, channel) DO UPDATE SET list_key = COALESCE(list_key,"
            " excluded.list_key)",
            [(user, channel, list_key(ts, channel)) for user in users],
        )
    db.execute(
        "INSERT INTO conversations (user_id, channel, last_read) VALUES (?, ?, ?)"
        " ON CONFLICT (user_id, channel) DO UPDATE SET last_read = MAX(last_read,"
        " excluded.last_read)",
        (sender, channel, offset),
    )


class SQLiteConversations(SQLiteBase):
    """:class:`storage.base.ConversationStore` on SQLite."""

    async def mark_read(self, user_id: str, channel: str, offset: int) -> ReadMark:
        def run() -> ReadMark:
            db = self._conn()
            with immediate(db):
                head = db.execute(
                    "SELECT last_offset FROM channels WHERE name = ?", (channel,)
                ).fetchone()
                last_offset = 0 if head is None else int(head[0])
                target = min(offset, last_offset)
                row = db.execute(
                    "SELECT last_read FROM conversations WHERE user_id = ? AND channel = ?",
                    (user_id, channel),
                ).fetchone()
                current = 0 if row is None else int(row[0])
                if target <= current:
                    return ReadMark(current, last_offset, moved=False)
                db.execute(
                    "INSERT INTO conversations (user_id, channel, last_read) VALUES (?, ?, ?)"
                    " ON CONFLICT (user_id, channel) DO UPDATE SET last_read = excluded.last_read",
                    (user_id, channel, target),
                )
            return ReadMark(target, last_offset, moved=True)

        return await self._run(run)

    async def read_positions(self, user_id: str, channels: list[str]) -> dict[str, int]:
        def run() -> dict[str, int]:
            found = dict.fromkeys(channels, 0)
            db = self._conn()
            for chunk in chunks(channels):
                marks = ", ".join("?" * len(chunk))
                for channel, last_read in db.execute(
                    "SELECT channel, last_read FROM conversations"
                    f" WHERE user_id = ? AND channel IN ({marks})",
                    (user_id, *chunk),
                ):
                    found[channel] = int(last_read)
            return found

        return await self._run(run)

    async def list_conversations(
        self, user_id: str, *, limit: int, before: str | None
    ) -> list[Conversation]:
        def run() -> list[Conversation]:
            if limit <= 0:
                return []
            below = "" if before is None else " AND c.list_key < ?"
            arguments = (user_id, limit) if before is None else (user_id, before, limit)
            rows = (
                self._conn()
                .execute(
                    "SELECT c.channel, c.last_read, c.list_key, h.last_offset, h.epoch, m.id,"
                    " g.name FROM conversations c"
                    " LEFT JOIN channels h ON h.name = c.channel"
                    " LEFT JOIN messages m ON m.channel = c.channel AND m.offset = h.last_offset"
                    " LEFT JOIN groups g ON g.id = CASE WHEN substr(c.channel, 1, 6) = 'group:'"
                    " THEN substr(c.channel, 7) END"
                    f" WHERE c.user_id = ? AND c.list_key IS NOT NULL{below}"
                    " ORDER BY c.list_key DESC LIMIT ?",
                    arguments,
                )
                .fetchall()
            )
            return [
                Conversation(
                    channel=channel,
                    last_offset=0 if offset is None else int(offset),
                    epoch=epoch or "",
                    last_ts=None if last_id is None else ids.timestamp_ms(last_id),
                    last_read=int(last_read),
                    name=name,
                    cursor=key,
                )
                for channel, last_read, key, offset, epoch, last_id, name in rows
            ]

        return await self._run(run)
