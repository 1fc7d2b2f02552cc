"""Follows, blocks and home feeds: the records and the :class:`FollowStore` protocol.

:class:`storage.base.Store` includes :class:`FollowStore`; both backends implement it, checked by
the contract suite. What each part promises:

- **A follow** is one edge (follower → followee). :meth:`FollowStore.follow` and
  :meth:`FollowStore.unfollow` are idempotent and say whether they changed anything; the
  per-user totals (:class:`FollowCounts`) change in the same write, so they never drift.
- **A block** is one edge (blocker → blocked). Blocking removes the follow edges between the
  two, both ways (the block is written first); who may follow or message whom is the caller's
  rule.
- **A post** is an entry in its author's timeline: the author's own ready video, or a video
  they re-shared. Timeline and feed entries share :class:`FeedItem`, keyed by a time-sortable
  id (the video's id for an original post, a new id for a re-share), newest first.
- **A wide author** is one whose posts are merged into followers' feeds when they are read
  instead of being written into each feed (fan-out on read); :meth:`FollowStore.add_post`
  with ``wide`` marks them, for good.
- **A feed item** is a copy of a post in one follower's feed (fan-out on write), written in
  batches. Writing the same item twice keeps one. Items carry an expiry: reads skip expired
  ones, and DynamoDB deletes them (TTL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class FollowCounts:
    followers: int = 0
    following: int = 0


@dataclass(frozen=True, slots=True)
class FeedItem:
    id: str
    """Time-sortable: the video's id for its owner's post, a new id for a re-share."""
    video_id: str
    author: str
    """Whose post it is: the video's owner, or the user who re-shared it."""


class FollowStore(Protocol):
    async def follow(self, follower: str, followee: str) -> bool:
        """Add the edge; True when it was not there (the totals moved)."""
        ...

    async def unfollow(self, follower: str, followee: str) -> bool:
        """Remove the edge; True when it was there."""
        ...

    async def is_following(self, follower: str, followee: str) -> bool: ...

    async def list_followers(self, user: str, *, limit: int, after: str | None) -> list[str]:
        """Return up to ``limit`` follower ids above ``after``, in id order."""
        ...

    async def list_following(self, user: str, *, limit: int, after: str | None) -> list[str]:
        """Return up to ``limit`` ids of followed users above ``after``, in id order."""
        ...

    async def follow_counts(self, user: str) -> FollowCounts: ...

    async def block(self, blocker: str, blocked: str) -> bool:
        """Block, removing both follow edges between the two; True when newly blocked."""
        ...

    async def unblock(self, blocker: str, blocked: str) -> bool: ...

    async def is_blocked(self, blocker: str, blocked: str) -> bool: ...

    async def add_post(self, item: FeedItem, *, wide: bool) -> bool:
        """Record the post in its author's timeline; ``wide`` marks the author as read-merged.

        Return False, writing no post, when the author has a post of this video already (a
        repeated re-share, a video made ready twice): each author posts a video once.
        """
        ...

    async def list_posts(self, author: str, *, limit: int, before: str | None) -> list[FeedItem]:
        """Return up to ``limit`` of the author's posts with ids below ``before``, newest first."""
        ...

    async def wide_followees(self, user: str) -> list[str]:
        """Return the users ``user`` follows whose posts are merged in at read time."""
        ...

    async def add_feed_items(self, users: list[str], item: FeedItem, *, expires_at: int) -> None:
        """Write the item into each user's feed (one batch); ``expires_at`` in epoch seconds."""
        ...

    async def list_feed(self, user: str, *, limit: int, before: str | None) -> list[FeedItem]:
        """Return up to ``limit`` unexpired items of the user's feed below ``before``, newest
        first."""
        ...
