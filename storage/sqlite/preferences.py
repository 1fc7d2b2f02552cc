"""The SQLite side of :class:`storage.push.PreferenceStore`: ``push_preferences`` and ``push_mutes``.

One row per user holds the kinds turned off (a comma-separated list) and the quiet hours; one
row per (user, conversation) a mute. A mute's bound check, the deletion of ended mutes and the
write are one write transaction (``BEGIN IMMEDIATE``), so the bound is exact here.
"""

from __future__ import annotations

from storage.push import Mute, PushPreferences, QuietHours
from storage.sqlite.base import SQLiteBase, immediate

PREFERENCE_SCHEMA = """
CREATE TABLE IF NOT EXISTS push_preferences (
    user_id TEXT PRIMARY KEY,
    kinds_off TEXT NOT NULL,
    quiet_start INTEGER,
    quiet_end INTEGER,
    quiet_zone TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS push_mutes (
    user_id TEXT NOT NULL,
    conversation TEXT NOT NULL,
    until INTEGER,
    PRIMARY KEY (user_id, conversation)
) WITHOUT ROWID;
"""


class SQLitePreferences(SQLiteBase):
    """:class:`storage.push.PreferenceStore` on SQLite."""

    async def get_push_preferences(self, user_id: str) -> PushPreferences:
        def run() -> PushPreferences:
            db = self._conn()
            row = db.execute(
                "SELECT kinds_off, quiet_start, quiet_end, quiet_zone FROM push_preferences"
                " WHERE user_id = ?",
                (user_id,),
            ).fetchone()
            mutes = db.execute(
                "SELECT conversation, until FROM push_mutes WHERE user_id = ?"
                " ORDER BY conversation",
                (user_id,),
            ).fetchall()
            kinds_off: frozenset[str] = frozenset()
            quiet = None
            if row is not None:
                kinds_off = frozenset(kind for kind in str(row[0]).split(",") if kind)
                if row[1] is not None:
                    quiet = QuietHours(int(row[1]), int(row[2]), str(row[3]))
            return PushPreferences(
                kinds_off=kinds_off,
                quiet=quiet,
                mutes=tuple(Mute(str(c), None if u is None else int(u)) for c, u in mutes),
            )

        return await self._run(run)

    async def set_push_preferences(
        self, user_id: str, *, kinds_off: frozenset[str], quiet: QuietHours | None
    ) -> None:
        def run() -> None:
            db = self._conn()
            with immediate(db):
                db.execute(
                    "INSERT INTO push_preferences"
                    " (user_id, kinds_off, quiet_start, quiet_end, quiet_zone)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET"
                    " kinds_off = excluded.kinds_off, quiet_start = excluded.quiet_start,"
                    " quiet_end = excluded.quiet_end, quiet_zone = excluded.quiet_zone",
                    (
                        user_id,
                        ",".join(sorted(kinds_off)),
                        None if quiet is None else quiet.start,
                        None if quiet is None else quiet.end,
                        None if quiet is None else quiet.zone,
                    ),
                )

        await self._run(run)

    async def mute_conversation(
        self, user_id: str, conversation: str, until: int | None, *, now: int, limit: int
    ) -> bool:
        def run() -> bool:
            db = self._conn()
            with immediate(db):
                db.execute(
                    "DELETE FROM push_mutes WHERE user_id = ? AND until IS NOT NULL AND until <= ?"
                    " AND conversation != ?",
                    (user_id, now, conversation),
                )
                moved = db.execute(
                    "UPDATE push_mutes SET until = ? WHERE user_id = ? AND conversation = ?",
                    (until, user_id, conversation),
                )
                if moved.rowcount:
                    return True
                (muted,) = db.execute(
                    "SELECT count(*) FROM push_mutes WHERE user_id = ?", (user_id,)
                ).fetchone()
                if muted >= limit:
                    return False
                db.execute(
                    "INSERT INTO push_mutes (user_id, conversation, until) VALUES (?, ?, ?)",
                    (user_id, conversation, until),
                )
            return True

        return await self._run(run)

    async def unmute_conversation(self, user_id: str, conversation: str) -> bool:
        def run() -> bool:
            db = self._conn()
            with immediate(db):
                gone = db.execute(
                    "DELETE FROM push_mutes WHERE user_id = ? AND conversation = ?",
                    (user_id, conversation),
                )
            return gone.rowcount == 1

        return await self._run(run)
