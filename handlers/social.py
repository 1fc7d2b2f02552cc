"""Videos and what viewers do with them: likes, comments, shares, and the video's live channel.

Ops: ``create_video``, ``get_video``, ``like``, ``unlike``, ``like_status``, ``comment``,
``comments``, ``delete_comment``, ``share``. REST routes call the same functions.

Who may do what:

- A video is visible to its owner in every status and to everyone else once it is ``ready``;
  to them anything else is ``not_found``, so the ids of unpublished videos are not disclosed.
- Liking, commenting and sharing need a ready video (``video_not_ready`` for its owner before).
- A comment is deleted by its author or by the video's owner (who moderates their own video).

Counting: a change is counted only after the store accepted it and said it was one (a like that
was not there, an unlike of a like that was, a comment stored, a share that was not a repeated
``client_msg_id``), through ``services.hot_counts``. Those counters push coalesced absolute
totals (``counts``) to ``video:{id}`` and write them to the store in batches; see
``gateway.fanout.counts``.

New and deleted comments are pushed to ``video:{id}`` at once, as ephemeral pushes (``comment``,
``comment_deleted``): comments are records of the video, listed and deleted through the store,
not events of the channel, so they carry no channel offset. A client that reconnects reloads
the first page of ``comments`` (a cacheable read) instead of replaying the channel.

Video records are read through a per-node cache (``services.videos``, a few seconds), since
every like checks its video's status: a status change reaches every node within that time.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import orjson

from handlers import chat
from handlers.base import Context, Params, Result, operation
from handlers.channels import Kind, parse_channel
from handlers.errors import FORBIDDEN, INVALID_PARAMS, NOT_FOUND, VIDEO_NOT_READY, OpError
from handlers.messages import comment_deleted_message, comment_fields, comment_message
from storage import ids
from storage.videos import Video, VideoCounts, VideoStatus

VideoId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
CommentId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
MAX_COMMENTS_PAGE = 100


class CreateVideoParams(Params, tag="create_video"):
    title: Title


class GetVideoParams(Params, tag="get_video"):
    video_id: VideoId


class LikeParams(Params, tag="like"):
    video_id: VideoId


class UnlikeParams(Params, tag="unlike"):
    video_id: VideoId


class LikeStatusParams(Params, tag="like_status"):
    video_id: VideoId


class CommentParams(Params, tag="comment"):
    video_id: VideoId
    text: Text
    client_msg_id: chat.ClientMsgId | None = None


class CommentsParams(Params, tag="comments"):
    video_id: VideoId
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_COMMENTS_PAGE)] = 20
    before: CommentId | None = None


class DeleteCommentParams(Params, tag="delete_comment"):
    video_id: VideoId
    comment_id: CommentId


class ShareParams(Params, tag="share"):
    video_id: VideoId
    channel: chat.Channel
    text: Text | None = None
    client_msg_id: chat.ClientMsgId | None = None


def video_channel(video_id: str) -> str:
    return f"video:{video_id}"


def video_fields(video: Video, counts: VideoCounts) -> dict[str, Any]:
    """Return a video as the wire shows it, with the given totals."""
    return {
        "video_id": video.id,
        "channel": video_channel(video.id),
        "owner": video.owner,
        "title": video.title,
        "status": video.status.value,
        "created_at": video.created_at,
        "likes": max(0, counts.likes),
        "comments": max(0, counts.comments),
        "shares": max(0, counts.shares),
        "views": max(0, counts.views),
        "watch_seconds": max(0, counts.watch_ms) // 1000,
        "version": counts.version,
    }


def _non_blank(text: str, field: str) -> str:
    if not text.strip():
        raise OpError(INVALID_PARAMS, f"{field} must not be blank - at `$.{field}`")
    return text


async def load_video(ctx: Context, video_id: str) -> Video | None:
    """Return the video record, through this node's short cache."""
    cache = ctx.services.videos
    hit, video = cache.lookup(video_id)
    if not hit:
        video = await ctx.services.store.get_video(video_id)
        cache.put(video_id, video)
    return video


async def visible_video(ctx: Context, video_id: str) -> Video:
    """Return the video if the caller may see it, else raise ``not_found``."""
    video = await load_video(ctx, video_id)
    if video is None or (video.status is not VideoStatus.READY and video.owner != ctx.user_id):
        raise OpError(NOT_FOUND, f"no video {video_id}")
    return video


async def ready_video(ctx: Context, video_id: str) -> Video:
    """Return the video if the caller may see it and it is ready for likes and comments."""
    video = await visible_video(ctx, video_id)
    if video.status is not VideoStatus.READY:
        raise OpError(
            VIDEO_NOT_READY,
            f"the video is {video.status.value}: likes, comments and shares wait until it is ready",
        )
    return video


async def live_counts(ctx: Context, video: Video) -> VideoCounts:
    """The video's totals right now: the hot counters' while they hold it, else the stored."""
    return await ctx.services.hot_counts.totals(video.id) or video.counts


@operation(CreateVideoParams)
async def create_video(ctx: Context, params: CreateVideoParams) -> Result:
    """Create a video that is ready at once, with no media: for development and tests only.

    Real videos are made by uploading them (media creates the record in ``uploading`` and moves
    it to ``ready``); this op exists only where ``MOOSIC_VIDEO_READY_ON_CREATE`` is on.
    """
    if not ctx.services.limits.video_ready_on_create:
        raise OpError(FORBIDDEN, "videos are created by uploading them (POST /v1/media/uploads)")
    title = _non_blank(params.title, "title").strip()
    video = await ctx.services.store.create_video(ctx.user_id, title, status=VideoStatus.READY)
    ctx.services.videos.put(video.id, video)
    if ctx.services.feeds is not None:
        # Ready at once: it goes to the followers' feeds as an uploaded video does when media
        # marks it ready (in the background: this returns before any follower is reached).
        await ctx.services.feeds.publish(video, video.owner)
    return video_fields(video, video.counts)


@operation(GetVideoParams)
async def get_video(ctx: Context, params: GetVideoParams) -> Result:
    video = await visible_video(ctx, params.video_id)
    return video_fields(video, await live_counts(ctx, video))


async def _set_like(ctx: Context, video_id: str, liked: bool) -> Result:
    video = await ready_video(ctx, video_id)
    # The store's conditional write decides, once per (video, user) whatever node it runs on:
    # only a real change is counted.
    changed = await ctx.services.store.set_like(video.id, ctx.user_id, liked)
    if changed:
        await ctx.services.hot_counts.add(video.id, likes=1 if liked else -1)
    return {"video_id": video.id, "liked": liked, "changed": changed}


@operation(LikeParams)
async def like(ctx: Context, params: LikeParams) -> Result:
    """Like a video; idempotent (``changed`` false when it was liked already)."""
    return await _set_like(ctx, params.video_id, True)


@operation(UnlikeParams)
async def unlike(ctx: Context, params: UnlikeParams) -> Result:
    """Take a like back; idempotent (``changed`` false when it was not liked)."""
    return await _set_like(ctx, params.video_id, False)


@operation(LikeStatusParams)
async def like_status(ctx: Context, params: LikeStatusParams) -> Result:
    video = await visible_video(ctx, params.video_id)
    return {
        "video_id": video.id,
        "liked": await ctx.services.store.has_liked(video.id, ctx.user_id),
    }


@operation(CommentParams)
async def comment(ctx: Context, params: CommentParams) -> Result:
    """Store a comment, count it and push it to the video's watchers."""
    text = _non_blank(params.text, "text")
    video = await ready_video(ctx, params.video_id)
    services = ctx.services
    stored = await services.store.add_comment(video.id, ctx.user_id, text, params.client_msg_id)
    fields = comment_fields(stored.comment)
    if not stored.duplicate:
        await services.hot_counts.add(video.id, comments=1)
        channel = video_channel(video.id)
        await services.fanout.publish(channel, comment_message(channel, stored.comment))
        if services.notifier is not None:
            # The video's owner, if not connected, is told by push.
            services.notifier.comment(video.owner, video.id, ctx.user_id, text)
    return {**fields, "duplicate": stored.duplicate}


@operation(CommentsParams)
async def comments(ctx: Context, params: CommentsParams) -> Result:
    """A page of comments, newest first; ``next_before`` continues it."""
    video = await visible_video(ctx, params.video_id)
    if params.before is not None and not ids.is_valid(params.before):
        raise OpError(INVALID_PARAMS, "before is a comment id - at `$.before`")
    page = await ctx.services.store.list_comments(
        video.id, limit=params.limit, before=params.before
    )
    return {
        "video_id": video.id,
        "comments": [comment_fields(c) for c in page],
        "next_before": page[-1].id if len(page) == params.limit else None,
    }


@operation(DeleteCommentParams)
async def delete_comment(ctx: Context, params: DeleteCommentParams) -> Result:
    """Delete a comment: its author may, and so may the video's owner."""
    video = await visible_video(ctx, params.video_id)
    store = ctx.services.store
    found = await store.get_comment(video.id, params.comment_id)
    if found is None:
        raise OpError(NOT_FOUND, f"no comment {params.comment_id} on video {video.id}")
    if ctx.user_id not in (found.author, video.owner):
        raise OpError(FORBIDDEN, "only its author or the video's owner deletes a comment")
    if not await store.delete_comment(video.id, found.id):
        raise OpError(NOT_FOUND, f"no comment {params.comment_id} on video {video.id}")
    await ctx.services.hot_counts.add(video.id, comments=-1)
    channel = video_channel(video.id)
    push = comment_deleted_message(channel, video.id, found.id)
    await ctx.services.fanout.publish(channel, push)
    return {"video_id": video.id, "comment_id": found.id, "deleted": True}


@operation(ShareParams)
async def share(ctx: Context, params: ShareParams) -> Result:
    """Share a video to a DM or a group: a chat message that carries the video, counted."""
    channel = parse_channel(params.channel)
    if channel.kind is not Kind.DM and channel.kind is not Kind.GROUP:
        raise OpError(
            INVALID_PARAMS, "videos are shared to dm: and group: channels - at `$.channel`"
        )
    video = await ready_video(ctx, params.video_id)
    data: dict[str, Any] = {
        "type": "video_share",
        "video": {"video_id": video.id, "title": video.title, "owner": video.owner},
    }
    if params.text is not None:
        data["text"] = _non_blank(params.text, "text")
    # The chat path stores it with the channel's next offset and fans it out: the share is an
    # ordinary message (history, recovery, unread counts), with write access checked there.
    published = await chat.publish(
        ctx,
        chat.PublishParams(
            channel=channel.name,
            data=msgspec.Raw(orjson.dumps(data)),
            client_msg_id=params.client_msg_id,
        ),
    )
    if not published["duplicate"]:
        await ctx.services.hot_counts.add(video.id, shares=1)
    return {**published, "video_id": video.id}
