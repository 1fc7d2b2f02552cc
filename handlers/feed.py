"""Home feeds: delivering a post to its author's followers, and reading a feed page.

A post (a video that became ready, or a re-share) reaches followers two ways:

- **Fan-out on write** for authors with at most ``threshold`` followers: the post's
  :class:`~storage.follows.FeedItem` is written into each follower's feed, in batches.
- **Fan-out on read** for authors above it ("wide" authors): nothing is written per follower;
  :func:`read_page` merges the wide authors' recent posts into the reader's own items.

Either way, followers who are online get a ``feed`` push on their ``user:{id}`` channel. The
push is ephemeral (no offset, not stored, not replayed): the feed is the durable record, and a
client that reconnects reloads its first feed page instead of replaying the channel. Storing
it as a channel event would cost one store write per follower, which is what wide authors
must not cost.

:class:`FeedFanout` runs the walk over the followers in a background task: the request (or the
media worker) that made the post returns once the post is recorded. The walk reads the
followers a batch at a time, writes that batch's feed items in one store call, asks presence
about the whole batch at once, publishes to the online ones (the broker pipelines them: no
round trip is awaited per follower), and yields to the event loop between batches. At most
``max_running`` walks run at once on a node; more wait their turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from handlers.base import Fanout, PresenceView
from handlers.messages import feed_body, feed_message
from storage.base import Store
from storage.follows import FeedItem
from storage.ids import IdGenerator
from storage.videos import Video

log = logging.getLogger(__name__)


@dataclass(slots=True)
class FeedStats:
    """What the fan-out did on this node, for metrics and tests."""

    posts: int = 0
    """Posts recorded (a repeated post is not counted)."""
    wide_posts: int = 0
    """Posts of authors above the threshold (no per-follower writes)."""
    items_written: int = 0
    """Feed items written, one per follower of a narrow author."""
    pushes: int = 0
    """``feed`` pushes published to online followers."""
    failed: int = 0
    """Walks that stopped on an error (logged; followers not reached find the post later only
    if the author is wide)."""
    last_walk_seconds: float = 0.0
    """How long the last finished walk took, from the post to its last batch."""
    longest_batch_seconds: float = 0.0
    """The longest wall time of one batch's publish loop (the pushes to its online followers;
    the publishes await no Redis reply, so this is close to the time the loop was held)."""


class FeedFanout:
    """Records posts and walks the followers of each in the background."""

    def __init__(
        self,
        store: Store,
        fanout: Fanout,
        presence: PresenceView,
        *,
        threshold: int,
        batch: int = 500,
        item_ttl: int = 30 * 86400,
        max_running: int = 4,
        clock: Callable[[], float] = time.time,
        observe_walk: Callable[[float, str], None] | None = None,
    ) -> None:
        self._store = store
        self._fanout = fanout
        self._presence = presence
        self.threshold = threshold
        self._batch = batch
        self._item_ttl = item_ttl
        self._slots = asyncio.Semaphore(max_running)
        self._clock = clock
        self._observe_walk = observe_walk
        """Called with (seconds, ``narrow`` or ``wide``) after each walk, failed ones too."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = IdGenerator()
        self.stats = FeedStats()

    @property
    def running(self) -> int:
        """Walks started and not finished (waiting for a slot included)."""
        return len(self._tasks)

    async def publish(self, video: Video, by: str) -> FeedItem | None:
        """Record the post and start delivering it; None (nothing done) when ``by`` has posted
        this video already. Returns before any follower is reached.

        The owner's post of a video is keyed by the video's id (so a repeat is the same item);
        a re-share gets a new id, so it sorts by when it was shared.
        """
        item = FeedItem(video.id if by == video.owner else self._ids.new(), video.id, by)
        counts = await self._store.follow_counts(item.author)
        wide = counts.followers > self.threshold
        if not await self._store.add_post(item, wide=wide):
            return None
        self.stats.posts += 1
        if wide:
            self.stats.wide_posts += 1
        task = asyncio.get_running_loop().create_task(
            self._walk(item, video, wide), name=f"feed-{item.id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return item

    async def _walk(self, item: FeedItem, video: Video, wide: bool) -> None:
        async with self._slots:
            started = time.monotonic()
            try:
                await self._deliver(item, video, wide)
            except Exception:
                self.stats.failed += 1
                log.exception("feed fan-out of %s by %s stopped", item.video_id, item.author)
            self.stats.last_walk_seconds = seconds = time.monotonic() - started
            if self._observe_walk is not None:
                self._observe_walk(seconds, "wide" if wide else "narrow")

    async def _deliver(self, item: FeedItem, video: Video, wide: bool) -> None:
        body = feed_body(item, video)  # encoded once per post
        expires_at = int(self._clock()) + self._item_ttl
        after: str | None = None
        while True:
            page = await self._store.list_followers(item.author, limit=self._batch, after=after)
            if not page:
                return
            if not wide:
                await self._store.add_feed_items(page, item, expires_at=expires_at)
                self.stats.items_written += len(page)
            statuses = await self._presence.statuses(page)
            began = time.monotonic()
            for user in page:
                status = statuses.get(user)
                if status is not None and status.online:
                    # The broker delivers locally and queues the Redis publish on its pipelined
                    # connection: this await does not wait for Redis to answer.
                    await self._fanout.publish(f"user:{user}", feed_message(user, body))
                    self.stats.pushes += 1
            self.stats.longest_batch_seconds = max(
                self.stats.longest_batch_seconds, time.monotonic() - began
            )
            if len(page) < self._batch:
                return
            after = page[-1]
            await asyncio.sleep(0)  # let requests and other sockets run between batches

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no walk is running; False when some still are after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self._tasks:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=left)
        return True

    async def close(self, timeout: float) -> None:
        """Let running walks finish for up to ``timeout`` seconds, then cancel the rest."""
        if await self.wait_idle(timeout):
            return
        log.warning("cancelling %d feed fan-outs at shutdown", len(self._tasks))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def read_page(
    store: Store, user: str, *, limit: int, before: str | None
) -> tuple[list[FeedItem], str | None]:
    """Return a page of the user's feed, newest first, and the cursor of the next (or None).

    Merges the user's own feed items (fan-out on write) with the recent posts of the wide
    authors they follow (fan-out on read); a video reached twice on the page (posted, then
    re-shared) is listed once, at its newest item.
    """
    sources = [store.list_feed(user, limit=limit, before=before)]
    for author in await store.wide_followees(user):
        sources.append(store.list_posts(author, limit=limit, before=before))
    pages = await asyncio.gather(*sources)
    merged = sorted(
        {item.id: item for page in pages for item in page}.values(),
        key=lambda item: item.id,
        reverse=True,
    )
    page: list[FeedItem] = []
    seen_videos: set[str] = set()
    cursor: str | None = None
    for item in merged:
        if len(page) == limit:
            break
        cursor = item.id
        if item.video_id not in seen_videos:
            seen_videos.add(item.video_id)
            page.append(item)
    # Every source gave all it had below `before` unless it filled its page: only then, or
    # when this page stopped early, can there be more.
    more = len(page) == limit or any(len(p) == limit for p in pages)
    return page, cursor if more else None
