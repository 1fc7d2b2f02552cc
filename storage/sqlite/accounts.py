"""Accounts and refresh tokens on SQLite (``users``, ``refresh_tokens``, ``revoked_families``).

A refresh token is used once: the use and the check of its family's revocation are one write
transaction, so two processes presenting the same token cannot both succeed.
"""

from __future__ import annotations

import sqlite3
import time

from storage.base import RefreshState, RefreshUse, User
from storage.errors import Conflict
from storage.sqlite.base import SQLiteBase, immediate

ACCOUNT_SCHEMA = """CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    family_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX IF NOT EXISTS refresh_tokens_by_user ON refresh_tokens (user_id);
CREATE TABLE IF NOT EXISTS revoked_families (
    family_id TEXT PRIMARY KEY,
    revoked_at INTEGER NOT NULL
) WITHOUT ROWID;
"""


class SQLiteAccounts(SQLiteBase):
    """:class:`storage.base.AccountStore` and :class:`storage.base.RefreshTokenStore` on SQLite."""

    # -- accounts --------------------------------------------------------------------------

    async def create_user(self, username: str, password_hash: str) -> User:
        def run() -> User:
            # Ids are made on the store's thread only: IdGenerator is not thread-safe.
            user = User(self._ids.new(), username, password_hash, int(time.time()))
            try:
                self._conn().execute(
                    "INSERT INTO users (id, username, password_hash, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (user.id, user.username, user.password_hash, user.created_at),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"username {username!r} is taken") from exc
            return user

        return await self._run(run)

    async def get_user(self, user_id: str) -> User | None:
        return await self._user_where("id", user_id)

    async def get_user_by_username(self, username: str) -> User | None:
        return await self._user_where("username", username)

    async def _user_where(self, column: str, value: str) -> User | None:
        def run() -> User | None:
            row = (
                self._conn()
                .execute(
                    f"SELECT id, username, password_hash, created_at FROM users WHERE {column} = ?",
                    (value,),
                )
                .fetchone()
            )
            return None if row is None else User(*row)

        return await self._run(run)

    # -- refresh tokens --------------------------------------------------------------------

    async def add_refresh_token(
        self, token_hash: str, user_id: str, family_id: str, expires_at: int
    ) -> None:
        def run() -> None:
            try:
                self._conn().execute(
                    "INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at)"
                    " VALUES (?, ?, ?, ?)",
                    (token_hash, user_id, family_id, expires_at),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict("the refresh token already exists") from exc

        await self._run(run)

    async def use_refresh_token(self, token_hash: str, now: int) -> RefreshUse:
        def run() -> RefreshUse:
            db = self._conn()
            with immediate(db):
                row = db.execute(
                    "SELECT user_id, family_id, expires_at, used FROM refresh_tokens"
                    " WHERE token_hash = ?",
                    (token_hash,),
                ).fetchone()
                if row is None:
                    return RefreshUse(RefreshState.UNKNOWN)
                user_id, family_id, expires_at, used = row
                revoked = db.execute(
                    "SELECT 1 FROM revoked_families WHERE family_id = ?", (family_id,)
                ).fetchone()
                if used or revoked:
                    db.execute(
                        "INSERT OR IGNORE INTO revoked_families VALUES (?, ?)",
                        (family_id, now),
                    )
                    return RefreshUse(RefreshState.REUSED, user_id, family_id)
                if expires_at <= now:
                    return RefreshUse(RefreshState.EXPIRED, user_id, family_id)
                db.execute(
                    "UPDATE refresh_tokens SET used = 1 WHERE token_hash = ?",
                    (token_hash,),
                )
            return RefreshUse(RefreshState.OK, user_id, family_id)

        return await self._run(run)

    async def revoke_family(self, family_id: str) -> None:
        await self._run(
            lambda: self._conn().execute(
                "INSERT OR IGNORE INTO revoked_families VALUES (?, ?)",
                (family_id, int(time.time())),
            )
        )

    async def end_user_sessions(self, user_id: str, now: int, *, limit: int) -> list[str]:
        def run() -> list[str]:
            conn = self._conn()
            with immediate(conn):
                rows = conn.execute(
                    "SELECT DISTINCT family_id FROM refresh_tokens AS t"
                    " WHERE user_id = ? AND used = 0 AND expires_at > ?"
                    " AND NOT EXISTS"
                    " (SELECT 1 FROM revoked_families AS r WHERE r.family_id = t.family_id)"
                    " LIMIT ?",
                    (user_id, now, limit),
                ).fetchall()
                families = [str(row[0]) for row in rows]
                conn.executemany(
                    "INSERT OR IGNORE INTO revoked_families VALUES (?, ?)",
                    [(family, now) for family in families],
                )
            return families

        return await self._run(run)
