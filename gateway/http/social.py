"""REST routes of videos, likes, comments and shares; the same handlers as the WebSocket ops.

Reads that many clients repeat (a video, a page of its comments) are :attr:`Cache.SHARED`: they
answer with an ``ETag`` and a ``Cache-Control`` and with ``304 Not Modified`` to a matching
``If-None-Match``, so a CDN or an API cache in front can absorb a read storm. A ready video and
its comments are the same for every signed-in user, so they are ``public,
max-age=MOOSIC_VIDEO_CACHE_SECONDS``; what only its owner may see (a video still processing) is
``private, no-cache``.
"""

from __future__ import annotations

from aiohttp import web

from gateway.http.request import context, read_params
from gateway.http.routes import (
    BOOLEAN,
    COUNT,
    INTEGER,
    NULLABLE_STRING,
    OFFSET,
    SIGNED_IN,
    STRING,
    Cache,
    Reply,
    RouteTable,
    Schema,
    cursor,
    non_blank,
    obj,
    ref,
)
from gateway.settings import Settings
from handlers import social, trending
from handlers.channels import ID_PATTERN, MAX_CHANNEL_LENGTH
from storage.videos import VideoStatus

VIDEO_PARAM: dict[str, Schema] = {
    "video_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
}
SHARE_CHANNEL_PATTERN = f"^(?:dm:{ID_PATTERN}:{ID_PATTERN}|group:{ID_PATTERN})$"
"""Videos are shared to DMs and groups only (`share` refuses other kinds)."""

_COMMENT: Schema = {
    "comment_id": STRING,
    "video_id": STRING,
    "author": STRING,
    "text": STRING,
    "ts": INTEGER,
}
_COMMENT_OPTIONAL: Schema = {"client_msg_id": STRING, "deleted": {"const": True}}

_VIDEO: Schema = {
    "video_id": STRING,
    "channel": STRING,
    "owner": STRING,
    "title": STRING,
    "status": {"enum": [s.value for s in VideoStatus]},
    "created_at": INTEGER,
    "likes": COUNT,
    "comments": COUNT,
    "shares": COUNT,
    "views": COUNT,
    "watch_seconds": COUNT,
    "version": INTEGER,
}

ROUTES = RouteTable(
    {
        "Video": obj(_VIDEO),
        "TrendingVideo": obj({**_VIDEO, "score": {"type": "number", "exclusiveMinimum": 0}}),
        "Trending": obj(
            {
                "country": NULLABLE_STRING,
                "window_seconds": INTEGER,
                "videos": {"type": "array", "items": ref("TrendingVideo")},
            }
        ),
        "LikeChange": obj({"video_id": STRING, "liked": BOOLEAN, "changed": BOOLEAN}),
        "LikeStatus": obj({"video_id": STRING, "liked": BOOLEAN}),
        "Comment": obj(_COMMENT, _COMMENT_OPTIONAL),
        "CommentAdded": obj({**_COMMENT, "duplicate": BOOLEAN}, _COMMENT_OPTIONAL),
        "CommentPage": obj(
            {
                "video_id": STRING,
                "comments": {"type": "array", "items": ref("Comment")},
                "next_before": NULLABLE_STRING,
            }
        ),
        "CommentDeleted": obj(
            {"video_id": STRING, "comment_id": STRING, "deleted": {"const": True}}
        ),
        "Shared": obj(
            {
                "channel": STRING,
                "message_id": STRING,
                "offset": OFFSET,
                "epoch": STRING,
                "ts": INTEGER,
                "duplicate": BOOLEAN,
                "video_id": STRING,
            }
        ),
    },
    tag="videos",
)


def _share_channel(schema: Schema, settings: Settings) -> Schema:
    return {
        "type": "string",
        "maxLength": MAX_CHANNEL_LENGTH,
        "pattern": SHARE_CHANNEL_PATTERN,
        "description": "a `dm:{a}:{b}` (ids different and sorted) or `group:{id}` channel",
    }


ROUTES.op(
    "POST",
    "/v1/videos",
    social.create_video,
    "Create a ready video with no media (development and tests: "
    "`MOOSIC_VIDEO_READY_ON_CREATE`; otherwise 403)",
    ok={201: "Video"},
    errors=(*SIGNED_IN, 403, 413),
    in_body=True,
    fields={"title": non_blank},
)


@ROUTES.route(
    "GET",
    "/v1/videos/{video_id}",
    "A video with its live totals (`get_video`); ETag, Cache-Control, 304",
    ok={200: "Video"},
    errors=(*SIGNED_IN, 404),
    params=social.GetVideoParams,
    path_params=VIDEO_PARAM,
    cache=Cache.SHARED,
)
async def get_video(request: web.Request) -> Reply:
    ctx = context(request)
    result = await social.get_video(ctx, await read_params(request, social.GetVideoParams))
    return Reply(result, shared=result["status"] == VideoStatus.READY.value)


ROUTES.op(
    "GET",
    "/v1/videos/{video_id}/like",
    social.like_status,
    "Whether the caller likes the video (`like_status`)",
    ok={200: "LikeStatus"},
    errors=(*SIGNED_IN, 404),
    path_params=VIDEO_PARAM,
)
ROUTES.op(
    "PUT",
    "/v1/videos/{video_id}/like",
    social.like,
    "Like the video (`like`; idempotent)",
    ok={200: "LikeChange"},
    errors=(*SIGNED_IN, 404, 409),
    path_params=VIDEO_PARAM,
)
ROUTES.op(
    "DELETE",
    "/v1/videos/{video_id}/like",
    social.unlike,
    "Take the like back (`unlike`; idempotent)",
    ok={200: "LikeChange"},
    errors=(*SIGNED_IN, 404, 409),
    path_params=VIDEO_PARAM,
)


@ROUTES.route(
    "GET",
    "/v1/videos/{video_id}/comments",
    "A page of comments, newest first (`comments`); ETag, Cache-Control, 304",
    ok={200: "CommentPage"},
    errors=(*SIGNED_IN, 404),
    params=social.CommentsParams,
    fields={"before": cursor},
    path_params=VIDEO_PARAM,
    cache=Cache.SHARED,
)
async def list_comments(request: web.Request) -> Reply:
    ctx = context(request)
    params = await read_params(request, social.CommentsParams)
    result = await social.comments(ctx, params)
    video = await social.visible_video(ctx, params.video_id)  # the node's cache has it now
    return Reply(result, shared=video.status is VideoStatus.READY)


ROUTES.op(
    "POST",
    "/v1/videos/{video_id}/comments",
    social.comment,
    "Comment (`comment`); 200 when `client_msg_id` repeats an earlier one",
    ok={200: "CommentAdded", 201: "CommentAdded"},
    errors=(*SIGNED_IN, 404, 409, 413),
    in_body=True,
    fields={"text": non_blank},
    path_params=VIDEO_PARAM,
)
ROUTES.op(
    "DELETE",
    "/v1/videos/{video_id}/comments/{comment_id}",
    social.delete_comment,
    "Delete a comment: its author or the video's owner (`delete_comment`)",
    ok={200: "CommentDeleted"},
    errors=(*SIGNED_IN, 403, 404),
    path_params={**VIDEO_PARAM, "comment_id": {"type": "string", "minLength": 1}},
)
ROUTES.op(
    "POST",
    "/v1/videos/{video_id}/shares",
    social.share,
    "Share to a DM or a group as a message carrying the video (`share`); 200 when "
    "`client_msg_id` repeats",
    ok={200: "Shared", 201: "Shared"},
    errors=(*SIGNED_IN, 403, 404, 409, 413),
    in_body=True,
    fields={"channel": _share_channel, "text": non_blank},
    path_params=VIDEO_PARAM,
)
ROUTES.op(
    "GET",
    "/v1/trending",
    trending.trending,
    "The videos with the most engagement in the last `MOOSIC_TRENDING_WINDOW` (`trending`), "
    "from everyone or from one country (`country=KH`)",
    ok={200: "Trending"},
    errors=(*SIGNED_IN, 503),
)
