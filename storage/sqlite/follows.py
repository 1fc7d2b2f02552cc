"""The SQLite side of :class:`storage.follows.FollowStore`: follows, blocks, posts and feeds.

An aggregate on :class:`storage.sqlite.base.SQLiteBase`, on the store's one thread; writes that touch
several rows take the write lock (``BEGIN IMMEDIATE``) so several processes may share the file.
Expired feed items are skipped by reads and stay in the file (the embedded store is for one
machine; DynamoDB deletes them by TTL).
"""

from __future__ import annotations

import sqlite3
import time

from storage.follows import FeedItem, FollowCounts
from storage.sqlite.base import SQLiteBase, immediate

FOLLOW_SCHEMA = """
CREATE TABLE IF NOT EXISTS follows (
    follower TEXT NOT NULL,
    followee TEXT NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (follower, followee)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS follows_by_followee ON follows (followee, follower);
CREATE TABLE IF NOT EXISTS follow_counts (
    user_id TEXT PRIMARY KEY,
    followers INTEGER NOT NULL DEFAULT 0,
    following INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
    blocker TEXT NOT NULL,
    blocked TEXT NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (blocker, blocked)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS posts (
    author TEXT NOT NULL,
    id TEXT NOT NULL,
    video_id TEXT NOT NULL,
    PRIMARY KEY (author, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS posts_once ON posts (author, video_id);
CREATE TABLE IF NOT EXISTS wide_authors (user_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS feed_items (
    user_id TEXT NOT NULL,
    id TEXT NOT NULL,
    video_id TEXT NOT NULL,
    author TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, id)
) WITHOUT ROWID;
"""

_Row = tuple[str, str, str]


def _item(row: _Row) -> FeedItem:
    return FeedItem(id=row[0], video_id=row[1], author=row[2])


def _move_counts(db: sqlite3.Connection, follower: str, followee: str, step: int) -> None:
    db.executemany(
        "INSERT INTO follow_counts (user_id) VALUES (?) ON CONFLICT DO NOTHING",
        ((follower,), (followee,)),
    )
    db.execute(
        "UPDATE follow_counts SET following = following + ? WHERE user_id = ?", (step, follower)
    )
    db.execute(
        "UPDATE follow_counts SET followers = followers + ? WHERE user_id = ?", (step, followee)
    )


def _remove_edge(db: sqlite3.Connection, follower: str, followee: str) -> bool:
    cursor = db.execute(
        "DELETE FROM follows WHERE follower = ? AND followee = ?", (follower, followee)
    )
    if cursor.rowcount != 1:
        return False
    _move_counts(db, follower, followee, -1)
    return True


class SQLiteFollows(SQLiteBase):
    """:class:`storage.follows.FollowStore` on SQLite."""

    # -- the graph -------------------------------------------------------------------------

    async def follow(self, follower: str, followee: str) -> bool:
        def run() -> bool:
            db = self._conn()
            with immediate(db):
                cursor = db.execute(
                    "INSERT OR IGNORE INTO follows (follower, followee, ts) VALUES (?, ?, ?)",
                    (follower, followee, int(time.time() * 1000)),
                )
                if cursor.rowcount != 1:
                    return False
                _move_counts(db, follower, followee, 1)
                return True

        return await self._run(run)

    async def unfollow(self, follower: str, followee: str) -> bool:
        def run() -> bool:
            db = self._conn()
            with immediate(db):
                return _remove_edge(db, follower, followee)

        return await self._run(run)

    async def is_following(self, follower: str, followee: str) -> bool:
        return await self._exists(
            "SELECT 1 FROM follows WHERE follower = ? AND followee = ?", (follower, followee)
        )

    async def _exists(self, sql: str, arguments: tuple[str, ...]) -> bool:
        return await self._run(lambda: self._conn().execute(sql, arguments).fetchone() is not None)

    async def _user_ids(self, sql: str, user: str, limit: int, after: str | None) -> list[str]:
        def run() -> list[str]:
            rows = self._conn().execute(sql, (user, after or "", limit)).fetchall()
            return [row[0] for row in rows]

        return await self._run(run)

    async def list_followers(self, user: str, *, limit: int, after: str | None) -> list[str]:
        return await self._user_ids(
            "SELECT follower FROM follows WHERE followee = ? AND follower > ?"
            " ORDER BY follower LIMIT ?",
            user,
            limit,
            after,
        )

    async def list_following(self, user: str, *, limit: int, after: str | None) -> list[str]:
        return await self._user_ids(
            "SELECT followee FROM follows WHERE follower = ? AND followee > ?"
            " ORDER BY followee LIMIT ?",
            user,
            limit,
            after,
        )

    async def follow_counts(self, user: str) -> FollowCounts:
        def run() -> FollowCounts:
            row = (
                self._conn()
                .execute(
                    "SELECT followers, following FROM follow_counts WHERE user_id = ?", (user,)
                )
                .fetchone()
            )
            return FollowCounts() if row is None else FollowCounts(row[0], row[1])

        return await self._run(run)

    async def block(self, blocker: str, blocked: str) -> bool:
        def run() -> bool:
            db = self._conn()
            with immediate(db):
                cursor = db.execute(
                    "INSERT OR IGNORE INTO blocks (blocker, blocked, ts) VALUES (?, ?, ?)",
                    (blocker, blocked, int(time.time() * 1000)),
                )
                _remove_edge(db, blocker, blocked)
                _remove_edge(db, blocked, blocker)
                return cursor.rowcount == 1

        return await self._run(run)

    async def unblock(self, blocker: str, blocked: str) -> bool:
        def run() -> bool:
            cursor = self._conn().execute(
                "DELETE FROM blocks WHERE blocker = ? AND blocked = ?", (blocker, blocked)
            )
            return cursor.rowcount == 1

        return await self._run(run)

    async def is_blocked(self, blocker: str, blocked: str) -> bool:
        return await self._exists(
            "SELECT 1 FROM blocks WHERE blocker = ? AND blocked = ?", (blocker, blocked)
        )

    # -- posts and feeds -------------------------------------------------------------------

    async def add_post(self, item: FeedItem, *, wide: bool) -> bool:
        def run() -> bool:
            db = self._conn()
            with immediate(db):
                cursor = db.execute(
                    "INSERT OR IGNORE INTO posts (author, id, video_id) VALUES (?, ?, ?)",
                    (item.author, item.id, item.video_id),
                )
                if cursor.rowcount != 1:
                    return False
                if wide:
                    db.execute(
                        "INSERT OR IGNORE INTO wide_authors (user_id) VALUES (?)", (item.author,)
                    )
                return True

        return await self._run(run)

    async def list_posts(self, author: str, *, limit: int, before: str | None) -> list[FeedItem]:
        def run() -> list[FeedItem]:
            if limit <= 0:
                return []
            below = "" if before is None else " AND id < ?"
            arguments = (author, limit) if before is None else (author, before, limit)
            rows = (
                self._conn()
                .execute(
                    f"SELECT id, video_id, author FROM posts WHERE author = ?{below}"
                    " ORDER BY id DESC LIMIT ?",
                    arguments,
                )
                .fetchall()
            )
            return [_item(row) for row in rows]

        return await self._run(run)

    async def wide_followees(self, user: str) -> list[str]:
        def run() -> list[str]:
            rows = (
                self._conn()
                .execute(
                    "SELECT f.followee FROM follows f JOIN wide_authors w ON w.user_id = f.followee"
                    " WHERE f.follower = ? ORDER BY f.followee",
                    (user,),
                )
                .fetchall()
            )
            return [row[0] for row in rows]

        return await self._run(run)

    async def add_feed_items(self, users: list[str], item: FeedItem, *, expires_at: int) -> None:
        if not users:
            return
        rows = [(user, item.id, item.video_id, item.author, expires_at) for user in users]

        def run() -> None:
            db = self._conn()
            with immediate(db):
                db.executemany(
                    "INSERT OR IGNORE INTO feed_items (user_id, id, video_id, author, expires_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    rows,
                )

        await self._run(run)

    async def list_feed(self, user: str, *, limit: int, before: str | None) -> list[FeedItem]:
        def run() -> list[FeedItem]:
            if limit <= 0:
                return []
            now = int(time.time())
            below = "" if before is None else " AND id < ?"
            arguments = (user, now, limit) if before is None else (user, now, before, limit)
            rows = (
                self._conn()
                .execute(
                    "SELECT id, video_id, author FROM feed_items WHERE user_id = ?"
                    f" AND expires_at > ?{below} ORDER BY id DESC LIMIT ?",
                    arguments,
                )
                .fetchall()
            )
            return [_item(row) for row in rows]

        return await self._run(run)
