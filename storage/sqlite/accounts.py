"""Accounts, refresh tokens and one-time tokens on SQLite (``users``, ``user_emails``,
``refresh_tokens``, ``revoked_families``, ``one_time_tokens``).

A refresh token is used once: the use and the check of its family's revocation are one write
transaction, so two processes presenting the same token cannot both succeed; one-time tokens
likewise. An account's address is a row of ``user_emails`` (a table of its own, so files made
before addresses existed need no new column); a unique index over the verified rows makes a
verified address belong to one account.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from storage.base import OneTimeState, OneTimeUse, RefreshState, RefreshUse, User
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
CREATE TABLE IF NOT EXISTS revoked_families (
    family_id TEXT PRIMARY KEY,
    revoked_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refresh_tokens_by_user ON refresh_tokens (user_id, family_id);
CREATE TABLE IF NOT EXISTS user_emails (
    user_id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    verified INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS user_emails_verified ON user_emails (email) WHERE verified = 1;
CREATE TABLE IF NOT EXISTS one_time_tokens (
    token_hash TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    user_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""

_USER_COLUMNS = (
    "SELECT u.id, u.username, u.password_hash, u.created_at, e.email, COALESCE(e.verified, 0)"
    " FROM users u LEFT JOIN user_emails e ON e.user_id = u.id"
)


def _user(row: tuple[Any, ...] | None) -> User | None:
    if row is None:
        return None
    user_id, username, password_hash, created_at, email, verified = row
    return User(user_id, username, password_hash, created_at, email, bool(verified))


class SQLiteAccounts(SQLiteBase):
    """:class:`storage.base.AccountStore`, :class:`storage.base.RefreshTokenStore` and
    :class:`storage.base.OneTimeTokenStore` on SQLite."""

    # -- accounts --------------------------------------------------------------------------

    async def create_user(self, username: str, password_hash: str) -> User:
        def run() -> User:
            # Ids are made on the store's thread only: IdGenerator is not thread-safe.
            user = User(self._ids.new() + self._id_tag, username, password_hash, int(time.time()))
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

    async def get_user_by_email(self, email: str) -> User | None:
        def run() -> User | None:
            row = (
                self._conn()
                .execute(_USER_COLUMNS + " WHERE e.email = ? AND e.verified = 1", (email,))
                .fetchone()
            )
            return _user(row)

        return await self._run(run)

    async def _user_where(self, column: str, value: str) -> User | None:
        def run() -> User | None:
            row = (
                self._conn().execute(_USER_COLUMNS + f" WHERE u.{column} = ?", (value,)).fetchone()
            )
            return _user(row)

        return await self._run(run)

    def _user_now(self, db: sqlite3.Connection, user_id: str) -> User | None:
        return _user(db.execute(_USER_COLUMNS + " WHERE u.id = ?", (user_id,)).fetchone())

    async def set_email(self, user_id: str, email: str) -> User | None:
        def run() -> User | None:
            db = self._conn()
            with immediate(db):
                user = self._user_now(db, user_id)
                if user is None or user.email == email:
                    return user
                owner = db.execute(
                    "SELECT user_id FROM user_emails WHERE email = ? AND verified = 1", (email,)
                ).fetchone()
                if owner is not None:
                    raise Conflict("another account has verified this address")
                db.execute(
                    "INSERT INTO user_emails (user_id, email, verified) VALUES (?, ?, 0)"
                    " ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, verified = 0",
                    (user_id, email),
                )
                return self._user_now(db, user_id)

        return await self._run(run)

    async def verify_email(self, user_id: str, email: str) -> User | None:
        def run() -> User | None:
            db = self._conn()
            with immediate(db):
                user = self._user_now(db, user_id)
                if user is None or user.email != email:
                    return None
                if not user.email_verified:
                    try:
                        db.execute(
                            "UPDATE user_emails SET verified = 1 WHERE user_id = ?", (user_id,)
                        )
                    except sqlite3.IntegrityError as exc:
                        raise Conflict("another account has verified this address") from exc
                return self._user_now(db, user_id)

        return await self._run(run)

    async def set_password(self, user_id: str, password_hash: str) -> bool:
        def run() -> bool:
            cursor = self._conn().execute(
                "UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)
            )
            return cursor.rowcount == 1

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

    async def list_sessions(
        self, user_id: str, *, since: int, limit: int, after: str | None = None
    ) -> list[str]:
        def run() -> list[str]:
            rows = (
                self._conn()
                .execute(
                    "SELECT family_id FROM refresh_tokens WHERE user_id = ? AND family_id > ?"
                    " GROUP BY family_id HAVING MAX(expires_at) > ? ORDER BY family_id LIMIT ?",
                    (user_id, after or "", since, limit),
                )
                .fetchall()
            )
            return [row[0] for row in rows]

        return await self._run(run)

    # -- one-time tokens -------------------------------------------------------------------

    async def add_one_time_token(
        self, token_hash: str, purpose: str, user_id: str, subject: str, expires_at: int
    ) -> None:
        def run() -> None:
            try:
                self._conn().execute(
                    "INSERT INTO one_time_tokens"
                    " (token_hash, purpose, user_id, subject, expires_at) VALUES (?, ?, ?, ?, ?)",
                    (token_hash, purpose, user_id, subject, expires_at),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict("the token already exists") from exc

        await self._run(run)

    async def use_one_time_token(self, token_hash: str, purpose: str, now: int) -> OneTimeUse:
        def run() -> OneTimeUse:
            db = self._conn()
            with immediate(db):
                row = db.execute(
                    "SELECT purpose, user_id, subject, expires_at, used FROM one_time_tokens"
                    " WHERE token_hash = ?",
                    (token_hash,),
                ).fetchone()
                if row is None or row[0] != purpose:
                    return OneTimeUse(OneTimeState.UNKNOWN)
                _purpose, user_id, subject, expires_at, used = row
                if used:
                    return OneTimeUse(OneTimeState.USED, user_id, subject)
                if expires_at <= now:
                    return OneTimeUse(OneTimeState.EXPIRED, user_id, subject)
                db.execute(
                    "UPDATE one_time_tokens SET used = 1 WHERE token_hash = ?", (token_hash,)
                )
            return OneTimeUse(OneTimeState.OK, user_id, subject)

        return await self._run(run)

    async def revoke_family(self, family_id: str) -> None:
        await self._run(
            lambda: self._conn().execute(
                "INSERT OR IGNORE INTO revoked_families VALUES (?, ?)",
                (family_id, int(time.time())),
            )
        )
