"""The SQLite side of :class:`storage.push.DeviceStore`: one ``devices`` table.

A device row is keyed by its id and unique on its token's key (:func:`storage.push.token_key`),
so a token has one owner; registration, the move of a token to another user and the trim to the
per-user bound are one write transaction (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

from storage.push import Device, DeviceRegistration, token_key
from storage.sqlite.base import SQLiteBase, immediate, now_ms

DEVICE_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    token_key TEXT NOT NULL UNIQUE,
    platform TEXT NOT NULL,
    token TEXT NOT NULL,
    app_version TEXT NOT NULL,
    locale TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    seen_at INTEGER NOT NULL,
    endpoint TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS devices_by_user ON devices (user_id, seen_at);
"""

_COLUMNS = "id, user_id, platform, token, app_version, locale, created_at, seen_at, endpoint"
_Row = tuple[str, str, str, str, str, str, int, int, str | None]


def _device(row: _Row) -> Device:
    return Device(*row)


class SQLiteDevices(SQLiteBase):
    """:class:`storage.push.DeviceStore` on SQLite."""

    async def register_device(
        self,
        user_id: str,
        platform: str,
        token: str,
        app_version: str,
        locale: str,
        *,
        limit: int,
    ) -> DeviceRegistration:
        key = token_key(platform, token)

        def run() -> DeviceRegistration:
            now = now_ms()
            db = self._conn()
            with immediate(db):
                row = db.execute(
                    "SELECT id, user_id, created_at FROM devices WHERE token_key = ?", (key,)
                ).fetchone()
                if row is not None and row[1] == user_id:
                    db.execute(
                        "UPDATE devices SET app_version = ?, locale = ?, seen_at = ? WHERE id = ?",
                        (app_version, locale, now, row[0]),
                    )
                    device_id, created, created_at = str(row[0]), False, int(row[2])
                else:
                    if row is not None:
                        db.execute("DELETE FROM devices WHERE id = ?", (row[0],))
                    device_id, created, created_at = self._ids.new(now), True, now
                    db.execute(
                        f"INSERT INTO devices ({_COLUMNS}, token_key)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                        (device_id, user_id, platform, token, app_version, locale, now, now, key),
                    )
                stale = db.execute(
                    "SELECT id FROM devices WHERE user_id = ? AND id != ?"
                    " ORDER BY seen_at DESC, id DESC LIMIT -1 OFFSET ?",
                    (user_id, device_id, max(0, limit - 1)),
                ).fetchall()
                db.executemany("DELETE FROM devices WHERE id = ?", stale)
                endpoint = db.execute(
                    "SELECT endpoint FROM devices WHERE id = ?", (device_id,)
                ).fetchone()[0]
            device = Device(
                device_id, user_id, platform, token, app_version, locale, created_at, now, endpoint
            )
            return DeviceRegistration(device, created, tuple(str(r[0]) for r in stale))

        return await self._run(run)

    async def list_devices(self, user_id: str) -> list[Device]:
        def run() -> list[Device]:
            rows = (
                self._conn()
                .execute(
                    f"SELECT {_COLUMNS} FROM devices WHERE user_id = ? ORDER BY created_at, id",
                    (user_id,),
                )
                .fetchall()
            )
            return [_device(row) for row in rows]

        return await self._run(run)

    async def delete_device(self, user_id: str, device_id: str) -> bool:
        def run() -> bool:
            db = self._conn()
            with immediate(db):
                cursor = db.execute(
                    "DELETE FROM devices WHERE id = ? AND user_id = ?", (device_id, user_id)
                )
            return cursor.rowcount == 1

        return await self._run(run)

    async def set_device_endpoint(self, user_id: str, device_id: str, endpoint: str) -> bool:
        def run() -> bool:
            db = self._conn()
            with immediate(db):
                cursor = db.execute(
                    "UPDATE devices SET endpoint = ? WHERE id = ? AND user_id = ?",
                    (endpoint, device_id, user_id),
                )
            return cursor.rowcount == 1

        return await self._run(run)
