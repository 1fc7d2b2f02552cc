"""Videos and what viewers do with them: the records and the :class:`VideoStore` protocol.

:class:`storage.base.Store` includes :class:`VideoStore`; both backends implement it, checked by
the contract suite. What each part promises:

- **A video** has an owner, a title, a status (media moves it ``uploading → processing →
  moderating → ready | rejected | failed``) and its stored totals (:class:`VideoCounts`).
- **A like** is one record per (video, user), the source of truth. :meth:`VideoStore.set_like`
  is a conditional write: of any number of calls for one (video, user), from any number of nodes
  at once, exactly those that change the state say so, and that is what the gateway counts. A
  call retried after a lost answer still reports its own change once.
- **Totals** are counted by the gateway's hot counters and written here in batches by
  :meth:`VideoStore.save_video_counts`: absolute values with a version. A write applies only when
  its version is above the stored one, so writes from several nodes, late or repeated, converge
  on the newest totals and never go back.
- **Comments** are records per video, newest first by id (ids are time-sortable). Deleting one
  keeps a tombstone without its text, so a retried ``add_comment`` with the same client id still
  finds it (and does not store the comment again).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class VideoStatus(StrEnum):
    UPLOADING = "uploading"
    PROCESSING = "processing"
    MODERATING = "moderating"
    READY = "ready"
    """The only status in which anyone but the owner sees the video, or may like, comment on
    or share it."""
    REJECTED = "rejected"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class VideoCounts:
    """A video's totals and their version (it grows with every counted change)."""

    likes: int = 0
    comments: int = 0
    shares: int = 0
    version: int = 0
    views: int = 0
    """Views started (``view_start`` events of the clickstream)."""
    watch_ms: int = 0
    """Milliseconds watched, summed over the clickstream's ``watch_progress`` and ``view_end``."""


@dataclass(frozen=True, slots=True)
class Video:
    id: str
    owner: str
    title: str
    status: VideoStatus
    created_at: int
    """Seconds since the epoch."""
    counts: VideoCounts
    """The totals as last written by :meth:`VideoStore.save_video_counts` (the live ones may be
    ahead by one flush interval: the gateway's hot counters have them)."""


@dataclass(frozen=True, slots=True)
class Comment:
    id: str
    """Time-sortable (a ULID): newer comments have greater ids."""
    video_id: str
    author: str
    text: str
    """Empty once deleted."""
    ts: int
    """Server time of storage, milliseconds since the epoch."""
    client_msg_id: str | None = None
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class CommentResult:
    """What :meth:`VideoStore.add_comment` did."""

    comment: Comment
    duplicate: bool
    """True when ``client_msg_id`` matched an earlier comment, which is returned unchanged."""


class VideoStore(Protocol):
    async def create_video(
        self, owner: str, title: str, *, status: VideoStatus = VideoStatus.UPLOADING
    ) -> Video:
        """Create a video record with a new id and zero totals."""
        ...

    async def get_video(self, video_id: str) -> Video | None:
        """Return the video as stored now (strongly consistent), or None."""
        ...

    async def set_video_status(
        self, video_id: str, status: VideoStatus, *, expected: VideoStatus | None = None
    ) -> bool:
        """Move the video to ``status``; with ``expected``, only if that is its status now.

        Return False, changing nothing, when there is no such video or it is not in
        ``expected`` (another worker got there first). Which moves are allowed is the caller's
        rule (media's), not the store's.
        """
        ...

    async def set_like(self, video_id: str, user_id: str, liked: bool) -> bool:
        """Record that the user likes (or no longer likes) the video; True when that changed."""
        ...

    async def has_liked(self, video_id: str, user_id: str) -> bool: ...

    async def count_likes(self, video_id: str) -> int:
        """Count the video's like records: the exact total, read in full (for checks and repair,
        never on a request's path)."""
        ...

    async def add_comment(
        self, video_id: str, author: str, text: str, client_msg_id: str | None
    ) -> CommentResult:
        """Store a comment, idempotent on (video, author, client_msg_id)."""
        ...

    async def get_comment(self, video_id: str, comment_id: str) -> Comment | None:
        """Return the comment, or None when there is none (or it was deleted)."""
        ...

    async def list_comments(
        self, video_id: str, *, limit: int, before: str | None
    ) -> list[Comment]:
        """Return up to ``limit`` comments with ids below ``before``, newest first; no deleted
        ones. ``before`` is a position, not necessarily an existing comment."""
        ...

    async def delete_comment(self, video_id: str, comment_id: str) -> bool:
        """Delete a comment; False when there was none (or it was deleted already)."""
        ...

    async def save_video_counts(self, counts: dict[str, VideoCounts]) -> None:
        """Write absolute totals, per video id; each applies only over a lower stored version.

        Videos that do not exist are skipped.
        """
        ...
