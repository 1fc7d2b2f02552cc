"""Media ops: ask for an upload form, get a ready video's playback links; the video ledger.

The media backends (:mod:`media`) know no database. :class:`StoreLedger` is what they record
through: it moves a video record's status with a compare-and-set (so a duplicate delivery or a
second worker changes nothing) and then tells the owner on ``user:{owner}``, as a stored event
(so an owner who was offline finds "your video is ready" in the channel's history). A video
that reaches ``ready`` is posted to its owner's followers' feeds (:mod:`handlers.feed`); one
that is rejected, fails or waits for moderation never is. A video that reaches ``ready`` or
``rejected`` is also told to an owner who is not connected by push (``Services.notifier``).

A video held for review (the local backend's ``MOOSIC_MEDIA_MODERATION=hold``) is also noted in
the review queue (:data:`REVIEW_CHANNEL`, a stored channel no client can name), which the
server API lists; its decision (:func:`decide`) is recorded through the same ledger, so an
approved video is told to its owner and posted to its followers' feeds as when media approves it.
"""

from __future__ import annotations

import logging
from typing import Annotated

import msgspec
import orjson

from handlers.base import Context, Fanout, Feeds, Notifier, Result
from handlers.errors import (
    INVALID_PARAMS,
    LINK_EXPIRED,
    NOT_FOUND,
    UNSUPPORTED_MEDIA_TYPE,
    UPLOAD_REFUSED,
    UPLOAD_TOO_LARGE,
    VIDEO_NOT_HELD,
    VIDEO_NOT_READY,
    ErrorKind,
    OpError,
)
from handlers.messages import event_message
from media.errors import (
    LinkExpired,
    LinkInvalid,
    MediaError,
    UnsupportedType,
    UploadRefused,
    UploadTooLarge,
)
from media.keys import extension_for
from media.model import NEXT_STATES, Change, MediaBackend, VideoRef, VideoState
from storage.base import Store
from storage.videos import VideoStatus

log = logging.getLogger(__name__)

NOTIFIER = "system"
"""The ``from`` of the server's own events in ``user:`` channels (user ids are never this)."""
REVIEW_CHANNEL = "~review"
"""Stored channel of the videos held for review, one event per video (``{"video_id"}``)."""

_KINDS: dict[type[MediaError], ErrorKind] = {
    UnsupportedType: UNSUPPORTED_MEDIA_TYPE,
    UploadTooLarge: UPLOAD_TOO_LARGE,
    UploadRefused: UPLOAD_REFUSED,
    LinkExpired: LINK_EXPIRED,
    LinkInvalid: NOT_FOUND,
}


def client_error(exc: MediaError) -> OpError:
    """Map a media failure onto its client error code (its text is written for clients)."""
    for kind, error in _KINDS.items():
        if isinstance(exc, kind):
            return OpError(error, str(exc))
    raise exc


class UploadParams(msgspec.Struct, forbid_unknown_fields=False):
    content_type: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    size: Annotated[int, msgspec.Meta(ge=1)]
    """The file's size in bytes; the form accepts at most this many."""
    title: Annotated[str, msgspec.Meta(max_length=200)] = ""


class StoreLedger:
    """Video records in the store; each change pushed to the owner's ``user:`` channel."""

    def __init__(
        self,
        store: Store,
        fanout: Fanout,
        feeds: Feeds | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self._store = store
        self._fanout = fanout
        self._feeds = feeds
        self._notifier = notifier

    async def get(self, video_id: str) -> VideoRef | None:
        video = await self._store.get_video(video_id)
        if video is None:
            return None
        return VideoRef(video.id, video.owner, VideoState(video.status.value))

    async def record(self, change: Change) -> bool:
        if change.state not in NEXT_STATES[change.before]:
            raise ValueError(f"{change.before} -> {change.state} is not a move media makes")
        moved = await self._store.set_video_status(
            change.video_id,
            VideoStatus(change.state.value),
            expected=VideoStatus(change.before.value),
        )
        if moved:
            held = (
                change.state is VideoState.MODERATING and change.detail.get("review") == "pending"
            )
            if held:
                await self.hold(change)  # queued before anyone hears of it: a reviewer sees it
            await self.notify(change)
            if change.state is VideoState.READY:
                await self.post(change.video_id)
            if change.state in (VideoState.READY, VideoState.REJECTED):
                await self.push(change)
        return moved

    async def push(self, change: Change) -> None:
        """Tell an owner who is not connected that their video is ready or rejected (by push,
        decided in the background: :mod:`handlers.notify`)."""
        if self._notifier is None:
            return
        ready = change.state is VideoState.READY
        text = change.reason or ""
        if ready:
            try:
                video = await self._store.get_video(change.video_id)
                text = video.title if video is not None else ""
            except Exception:
                # The notification still goes, without the title.
                log.exception("could not read video %s for its notification", change.video_id)
        self._notifier.video(change.owner, change.video_id, ready, text)

    async def hold(self, change: Change) -> None:
        """Note a video waiting for review in the review queue (once per video)."""
        try:
            await self._store.append(
                REVIEW_CHANNEL,
                NOTIFIER,
                orjson.dumps({"video_id": change.video_id, "owner": change.owner}),
                f"video:{change.video_id}:held",
            )
        except Exception:
            # The video stays held (and reviewable by id); only the listing misses it.
            log.exception("could not add video %s to the review queue", change.video_id)

    async def post(self, video_id: str) -> None:
        """Post a video that just became ready to its owner's followers (in the background)."""
        if self._feeds is None:
            return
        try:
            video = await self._store.get_video(video_id)
            if video is not None and video.status is VideoStatus.READY:
                await self._feeds.publish(video, video.owner)
        except Exception:
            # Like the notification: the status is recorded; a post that could not be made is
            # logged, not retried by undoing the move.
            log.exception("could not post video %s to feeds", video_id)

    async def notify(self, change: Change) -> None:
        """Store the change as an event in ``user:{owner}`` and push it (once per state)."""
        channel = f"user:{change.owner}"
        try:
            stored = await self._store.append(
                channel,
                NOTIFIER,
                orjson.dumps(change.to_dict()),
                f"video:{change.video_id}:{change.state.value}",
            )
            if not stored.duplicate:
                message = stored.message
                await self._fanout.publish(
                    channel, event_message(message), message.offset, stored.epoch, message.ts
                )
        except Exception:
            # The status is recorded already; a lost notification must not undo or repeat it.
            log.exception("could not tell %s about video %s", change.owner, change.video_id)


async def create_upload(
    ctx: Context, media: MediaBackend, params: UploadParams, base_url: str, max_bytes: int
) -> Result:
    """Create a video record in ``uploading`` and sign the form its file is uploaded with."""
    try:
        extension_for(params.content_type)
        if params.size > max_bytes:
            raise UploadTooLarge(f"uploads are at most {max_bytes} bytes")
    except MediaError as exc:
        raise client_error(exc) from None
    video = await ctx.services.store.create_video(ctx.user_id, params.title)
    try:
        form = await media.upload_form(
            ctx.user_id, video.id, params.content_type, params.size, base_url
        )
    except MediaError as exc:
        raise client_error(exc) from None
    except ValueError as exc:
        raise OpError(INVALID_PARAMS, str(exc)) from None
    return {"video_id": video.id, "state": video.status.value, "upload": form.to_dict()}


async def playback(ctx: Context, media: MediaBackend, video_id: str, base_url: str) -> Result:
    """Signed links to a ready video; its owner also learns the state of one that is not."""
    video = await ctx.services.store.get_video(video_id)
    if video is None or (video.status is not VideoStatus.READY and video.owner != ctx.user_id):
        raise OpError(NOT_FOUND, "no such video")
    if video.status is not VideoStatus.READY:
        raise OpError(VIDEO_NOT_READY, f"the video is {video.status.value}, not ready")
    links = await media.playback(video.owner, video.id, base_url)
    return links.to_dict()


async def held_videos(store: Store, limit: int, before: str | None) -> Result:
    """One page of the review queue, newest first: the videos of it still waiting."""
    entries = await store.history(REVIEW_CHANNEL, limit=limit, before=before)
    videos: list[Result] = []
    for entry in entries:
        video_id = str(orjson.loads(entry.data).get("video_id", ""))
        video = await store.get_video(video_id) if video_id else None
        if video is not None and video.status is VideoStatus.MODERATING:
            videos.append(
                {
                    "video_id": video.id,
                    "owner": video.owner,
                    "title": video.title,
                    "created_at": video.created_at,
                    "held_at": entry.ts,
                }
            )
    return {
        "videos": videos,
        "next_before": entries[-1].id if len(entries) == limit else None,
    }


async def decide(
    store: Store, ledger: StoreLedger, video_id: str, approve: bool, reason: str | None
) -> Result:
    """Record a review's decision on a held video: ``ready`` or ``rejected``."""
    video = await store.get_video(video_id)
    if video is None:
        raise OpError(NOT_FOUND, "no such video")
    if video.status is not VideoStatus.MODERATING:
        raise OpError(VIDEO_NOT_HELD, f"the video is {video.status.value}, not held for review")
    state = VideoState.READY if approve else VideoState.REJECTED
    detail: dict[str, object] = {"moderation": "approved" if approve else "rejected"}
    if not approve and reason is None:
        reason = "the video breaks the content rules"
    change = Change(video.id, video.owner, VideoState.MODERATING, state, reason, detail)
    if not await ledger.record(change):
        raise OpError(VIDEO_NOT_HELD, "the video moved on while being decided")
    return {"video_id": video.id, "owner": video.owner, "state": state.value}
