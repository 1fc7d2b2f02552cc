"""The SQLite side of :class:`storage.videos.VideoStore`: videos, likes, comments, totals.

An aggregate on :class:`storage.sqlite.base.SQLiteBase`: it runs on the store's one thread and
takes the same write lock (``BEGIN IMMEDIATE``), so several gateway processes may share the file. Likes
arrive in floods, so they are written like appends, by group commit: likes that queue while the
store's thread writes one batch go together into the next transaction, in order.
"""

from __future__ import annotations

import os
import time

from storage.sqlite.base import SQLiteBase, immediate, now_ms
from storage.sqlite.commit import GroupCommit
from storage.videos import Comment, CommentResult, Video, VideoCounts, VideoStatus

VIDEO_SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    title TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    likes INTEGER NOT NULL DEFAULT 0,
    comments INTEGER NOT NULL DEFAULT 0,
    shares INTEGER NOT NULL DEFAULT 0,
    counts_version INTEGER NOT NULL DEFAULT 0,
    views INTEGER NOT NULL DEFAULT 0,
    watch_ms INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS video_likes (
    video_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (video_id, user_id)
) WITHOUT ROWID;
-- A deleted comment stays as a tombstone (deleted = 1, text ''), so its client_msg_id still
-- makes a retried add_comment a duplicate.
CREATE TABLE IF NOT EXISTS video_comments (
    video_id TEXT NOT NULL,
    id TEXT NOT NULL,
    author TEXT NOT NULL,
    text TEXT NOT NULL,
    ts INTEGER NOT NULL,
    client_msg_id TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (video_id, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS video_comments_by_client_id
    ON video_comments (video_id, author, client_msg_id) WHERE client_msg_id IS NOT NULL;
"""

VIDEO_ADDED_COLUMNS = (
    ("videos", "views", "INTEGER NOT NULL DEFAULT 0"),
    ("videos", "watch_ms", "INTEGER NOT NULL DEFAULT 0"),
)
"""Columns newer than the first schema: a file made before them gets them when opened."""
_VIDEO_COLUMNS = (
    "id, owner, title, status, created_at, likes, comments, shares, counts_version, views, watch_ms"
)
_COMMENT_COLUMNS = "id, video_id, author, text, ts, client_msg_id, deleted"
_VideoRow = tuple[str, str, str, str, int, int, int, int, int, int, int]
_CommentRow = tuple[str, str, str, str, int, str | None, int]
LikeChange = tuple[str, str, bool]
"""(video id, user id, liked)."""


def _video(row: _VideoRow) -> Video:
    return Video(
        id=row[0],
        owner=row[1],
        title=row[2],
        status=VideoStatus(row[3]),
        created_at=row[4],
        counts=VideoCounts(
            likes=row[5],
            comments=row[6],
            shares=row[7],
            version=row[8],
            views=row[9],
            watch_ms=row[10],
        ),
    )


def _comment(row: _CommentRow) -> Comment:
    return Comment(
        id=row[0],
        video_id=row[1],
        author=row[2],
        text=row[3],
        ts=row[4],
        client_msg_id=row[5],
        deleted=bool(row[6]),
    )


class SQLiteVideos(SQLiteBase):
    """:class:`storage.videos.VideoStore` on SQLite."""

    def __init__(
        self, path: str | os.PathLike[str], *, max_pending: int = 1024, id_tag: str = ""
    ) -> None:
        super().__init__(path, max_pending=max_pending, id_tag=id_tag)
        self._likes: GroupCommit[LikeChange, bool] = self._group_commit(self._like_batch)

    # -- videos ----------------------------------------------------------------------------

    async def create_video(
        self, owner: str, title: str, *, status: VideoStatus = VideoStatus.UPLOADING
    ) -> Video:
        def run() -> Video:
            # Ids are made on the store's thread only: IdGenerator is not thread-safe.
            video = Video(self._ids.new(), owner, title, status, int(time.time()), VideoCounts())
            self._conn().execute(
                "INSERT INTO videos (id, owner, title, status, created_at) VALUES (?, ?, ?, ?, ?)",
                (video.id, owner, title, status.value, video.created_at),
            )
            return video

        return await self._run(run)

    async def get_video(self, video_id: str) -> Video | None:
        def run() -> Video | None:
            row = (
                self._conn()
                .execute(f"SELECT {_VIDEO_COLUMNS} FROM videos WHERE id = ?", (video_id,))
                .fetchone()
            )
            return None if row is None else _video(row)

        return await self._run(run)

    async def set_video_status(
        self, video_id: str, status: VideoStatus, *, expected: VideoStatus | None = None
    ) -> bool:
        def run() -> bool:
            if expected is None:
                cursor = self._conn().execute(
                    "UPDATE videos SET status = ? WHERE id = ?", (status.value, video_id)
                )
            else:
                cursor = self._conn().execute(
                    "UPDATE videos SET status = ? WHERE id = ? AND status = ?",
                    (status.value, video_id, expected.value),
                )
            return cursor.rowcount == 1

        return await self._run(run)

    async def save_video_counts(self, counts: dict[str, VideoCounts]) -> None:
        if not counts:
            return
        rows = [
            (c.likes, c.comments, c.shares, c.views, c.watch_ms, c.version, v, c.version)
            for v, c in counts.items()
        ]

        def run() -> None:
            db = self._conn()
            with immediate(db):
                db.executemany(
                    "UPDATE videos SET likes = ?, comments = ?, shares = ?, views = ?,"
                    " watch_ms = ?, counts_version = ? WHERE id = ? AND counts_version < ?",
                    rows,
                )

        await self._run(run)

    # -- likes -----------------------------------------------------------------------------

    async def set_like(self, video_id: str, user_id: str, liked: bool) -> bool:
        """Queue the change; queued changes are written together, in order (group commit)."""
        return await self._queued(self._likes, (video_id, user_id, liked))

    def _like_batch(self, changes: list[LikeChange]) -> list[bool | BaseException]:
        db = self._conn()
        now = now_ms()
        results: list[bool | BaseException] = []
        with immediate(db):
            for video_id, user_id, liked in changes:
                if liked:
                    cursor = db.execute(
                        "INSERT OR IGNORE INTO video_likes (video_id, user_id, ts) VALUES (?, ?, ?)",
                        (video_id, user_id, now),
                    )
                else:
                    cursor = db.execute(
                        "DELETE FROM video_likes WHERE video_id = ? AND user_id = ?",
                        (video_id, user_id),
                    )
                results.append(cursor.rowcount == 1)
        return results

    async def has_liked(self, video_id: str, user_id: str) -> bool:
        def run() -> bool:
            row = (
                self._conn()
                .execute(
                    "SELECT 1 FROM video_likes WHERE video_id = ? AND user_id = ?",
                    (video_id, user_id),
                )
                .fetchone()
            )
            return row is not None

        return await self._run(run)

    async def count_likes(self, video_id: str) -> int:
        def run() -> int:
            row = (
                self._conn()
                .execute("SELECT COUNT(*) FROM video_likes WHERE video_id = ?", (video_id,))
                .fetchone()
            )
            return int(row[0])

        return await self._run(run)

    # -- comments --------------------------------------------------------------------------

    async def add_comment(
        self, video_id: str, author: str, text: str, client_msg_id: str | None
    ) -> CommentResult:
        def run() -> CommentResult:
            db = self._conn()
            with immediate(db):
                if client_msg_id is not None:
                    found = db.execute(
                        f"SELECT {_COMMENT_COLUMNS} FROM video_comments"
                        " WHERE video_id = ? AND author = ? AND client_msg_id = ?",
                        (video_id, author, client_msg_id),
                    ).fetchone()
                    if found is not None:
                        return CommentResult(_comment(found), duplicate=True)
                ts = now_ms()
                comment = Comment(self._ids.new(ts), video_id, author, text, ts, client_msg_id)
                db.execute(
                    f"INSERT INTO video_comments ({_COMMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 0)",
                    (comment.id, video_id, author, text, ts, client_msg_id),
                )
            return CommentResult(comment, duplicate=False)

        return await self._run(run)

    async def get_comment(self, video_id: str, comment_id: str) -> Comment | None:
        def run() -> Comment | None:
            row = (
                self._conn()
                .execute(
                    f"SELECT {_COMMENT_COLUMNS} FROM video_comments"
                    " WHERE video_id = ? AND id = ? AND deleted = 0",
                    (video_id, comment_id),
                )
                .fetchone()
            )
            return None if row is None else _comment(row)

        return await self._run(run)

    async def list_comments(
        self, video_id: str, *, limit: int, before: str | None
    ) -> list[Comment]:
        def run() -> list[Comment]:
            if limit <= 0:
                return []
            below = "" if before is None else " AND id < ?"
            arguments = (video_id, limit) if before is None else (video_id, before, limit)
            rows = (
                self._conn()
                .execute(
                    f"SELECT {_COMMENT_COLUMNS} FROM video_comments"
                    f" WHERE video_id = ? AND deleted = 0{below} ORDER BY id DESC LIMIT ?",
                    arguments,
                )
                .fetchall()
            )
            return [_comment(r) for r in rows]

        return await self._run(run)

    async def delete_comment(self, video_id: str, comment_id: str) -> bool:
        def run() -> bool:
            cursor = self._conn().execute(
                "UPDATE video_comments SET deleted = 1, text = ''"
                " WHERE video_id = ? AND id = ? AND deleted = 0",
                (video_id, comment_id),
            )
            return cursor.rowcount == 1

        return await self._run(run)
