"""Groups and their members on SQLite (``groups``, ``group_members``).

Membership writes keep conversation lists in step in the same transaction: a member enters the
list of ``group:{id}`` when the group is made with them or they are added (starting with what
is already in the channel read), and leaves it when removed (the read position stays).
"""

from __future__ import annotations

from storage.base import Group
from storage.conversations import group_channel, list_key
from storage.sqlite.base import SQLiteBase, immediate, now_ms

GROUP_SCHEMA = """CREATE TABLE IF NOT EXISTS groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_members (
    group_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
"""


class SQLiteGroups(SQLiteBase):
    """:class:`storage.base.GroupStore` on SQLite."""

    async def create_group(self, name: str, owner: str, members: list[str]) -> Group:
        everyone = dict.fromkeys([owner, *members])

        def run() -> Group:
            now = now_ms()
            group = Group(self._ids.new(now) + self._id_tag, name, owner, now // 1000)
            channel = group_channel(group.id)
            key = list_key(now, channel)
            db = self._conn()
            with immediate(db):
                db.execute(
                    "INSERT INTO groups (id, name, owner, created_at) VALUES (?, ?, ?, ?)",
                    (group.id, group.name, group.owner, group.created_at),
                )
                db.executemany(
                    "INSERT INTO group_members (group_id, user_id, joined_at) VALUES (?, ?, ?)",
                    [(group.id, user, group.created_at) for user in everyone],
                )
                db.executemany(
                    "INSERT INTO conversations (user_id, channel, last_read, list_key)"
                    " VALUES (?, ?, 0, ?)"
                    " ON CONFLICT (user_id, channel) DO UPDATE SET list_key = excluded.list_key",
                    [(user, channel, key) for user in everyone],
                )
            return group

        return await self._run(run)

    async def get_group(self, group_id: str) -> Group | None:
        def run() -> Group | None:
            row = (
                self._conn()
                .execute("SELECT id, name, owner, created_at FROM groups WHERE id = ?", (group_id,))
                .fetchone()
            )
            return None if row is None else Group(*row)

        return await self._run(run)

    async def list_members(self, group_id: str, *, limit: int) -> list[str]:
        def run() -> list[str]:
            rows = (
                self._conn()
                .execute(
                    "SELECT user_id FROM group_members WHERE group_id = ?"
                    " ORDER BY joined_at, user_id LIMIT ?",
                    (group_id, limit),
                )
                .fetchall()
            )
            return [r[0] for r in rows]

        return await self._run(run)

    async def count_members(self, group_id: str) -> int:
        def run() -> int:
            row = (
                self._conn()
                .execute("SELECT COUNT(*) FROM group_members WHERE group_id = ?", (group_id,))
                .fetchone()
            )
            return int(row[0])

        return await self._run(run)

    async def is_member(self, group_id: str, user_id: str) -> bool:
        def run() -> bool:
            row = (
                self._conn()
                .execute(
                    "SELECT 1 FROM group_members WHERE group_id = ? AND user_id = ?",
                    (group_id, user_id),
                )
                .fetchone()
            )
            return row is not None

        return await self._run(run)

    async def add_member(self, group_id: str, user_id: str) -> bool:
        def run() -> bool:
            now = now_ms()
            channel = group_channel(group_id)
            db = self._conn()
            with immediate(db):
                cursor = db.execute(
                    "INSERT OR IGNORE INTO group_members (group_id, user_id, joined_at)"
                    " VALUES (?, ?, ?)",
                    (group_id, user_id, now // 1000),
                )
                if cursor.rowcount != 1:
                    return False
                # A new member starts with what is already in the channel read.
                db.execute(
                    "INSERT INTO conversations (user_id, channel, last_read, list_key)"
                    " VALUES (?, ?, COALESCE((SELECT last_offset FROM channels WHERE name = ?), 0),"
                    " ?) ON CONFLICT (user_id, channel) DO UPDATE SET"
                    " last_read = MAX(last_read, excluded.last_read), list_key = excluded.list_key",
                    (user_id, channel, channel, list_key(now, channel)),
                )
            return True

        return await self._run(run)

    async def remove_member(self, group_id: str, user_id: str) -> bool:
        def run() -> bool:
            db = self._conn()
            with immediate(db):
                cursor = db.execute(
                    "DELETE FROM group_members WHERE group_id = ? AND user_id = ?",
                    (group_id, user_id),
                )
                if cursor.rowcount != 1:
                    return False
                # The read position stays, for a member who comes back.
                db.execute(
                    "UPDATE conversations SET list_key = NULL WHERE user_id = ? AND channel = ?",
                    (user_id, group_channel(group_id)),
                )
            return True

        return await self._run(run)
