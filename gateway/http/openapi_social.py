"""The social routes' entries in the OpenAPI document (:mod:`gateway.http.openapi` adds them)."""

from __future__ import annotations

from typing import Any

from gateway.http.openapi import (
    BOOLEAN,
    INTEGER,
    NULLABLE_STRING,
    OFFSET,
    SIGNED_IN,
    STORE_ID,
    STRING,
    Endpoint,
    _object,
    _ref,
    _struct_schema,
)
from gateway.settings import Settings
from handlers import social
from handlers.channels import ID_PATTERN, MAX_CHANNEL_LENGTH
from storage.videos import VideoStatus

VIDEO_PARAM: dict[str, dict[str, Any]] = {
    "video_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
}
COUNT = {"type": "integer", "minimum": 0}
SHARE_CHANNEL_PATTERN = f"^(?:dm:{ID_PATTERN}:{ID_PATTERN}|group:{ID_PATTERN})$"
"""Videos are shared to DMs and groups only (`share` refuses other kinds)."""


def _non_blank(schema: dict[str, Any]) -> dict[str, Any]:
    """A text field the server refuses when it is only whitespace (`_non_blank`)."""
    options = schema.get("anyOf")
    if options:
        return {**schema, "anyOf": [_non_blank(option) for option in options]}
    if schema.get("type") != "string":
        return schema
    return {**schema, "pattern": r"\S", "description": "not only whitespace"}


def schemas() -> dict[str, Any]:
    comment = {
        "comment_id": STRING,
        "video_id": STRING,
        "author": STRING,
        "text": STRING,
        "ts": INTEGER,
    }
    optional = {"client_msg_id": STRING, "deleted": {"const": True}}
    return {
        "Video": _object(
            {
                "video_id": STRING,
                "channel": STRING,
                "owner": STRING,
                "title": STRING,
                "status": {"enum": [s.value for s in VideoStatus]},
                "created_at": INTEGER,
                "likes": COUNT,
                "comments": COUNT,
                "shares": COUNT,
                "version": INTEGER,
            }
        ),
        "LikeChange": _object({"video_id": STRING, "liked": BOOLEAN, "changed": BOOLEAN}),
        "LikeStatus": _object({"video_id": STRING, "liked": BOOLEAN}),
        "Comment": _object(comment, optional),
        "CommentAdded": _object({**comment, "duplicate": BOOLEAN}, optional),
        "CommentPage": _object(
            {
                "video_id": STRING,
                "comments": {"type": "array", "items": _ref("Comment")},
                "next_before": NULLABLE_STRING,
            }
        ),
        "CommentDeleted": _object(
            {"video_id": STRING, "comment_id": STRING, "deleted": {"const": True}}
        ),
        "Shared": _object(
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
    }


def endpoints(settings: Settings) -> list[Endpoint]:
    comments_query = _struct_schema(social.CommentsParams, drop=("video_id",))["properties"]
    comments_query["before"] = {**comments_query["before"], "anyOf": [STORE_ID, {"type": "null"}]}
    comment_path: dict[str, dict[str, Any]] = {
        **VIDEO_PARAM,
        "comment_id": {"type": "string", "minLength": 1},
    }
    share_body = _struct_schema(social.ShareParams, drop=("video_id",))
    share_body["properties"]["text"] = _non_blank(share_body["properties"]["text"])
    comment_body = _struct_schema(social.CommentParams, drop=("video_id",))
    comment_body["properties"]["text"] = _non_blank(comment_body["properties"]["text"])
    video_body = _struct_schema(social.CreateVideoParams)
    video_body["properties"]["title"] = _non_blank(video_body["properties"]["title"])
    share_body["properties"]["channel"] = {
        "type": "string",
        "maxLength": MAX_CHANNEL_LENGTH,
        "pattern": SHARE_CHANNEL_PATTERN,
        "description": "a `dm:{a}:{b}` (ids different and sorted) or `group:{id}` channel",
    }
    return [
        Endpoint(
            "POST",
            "/v1/videos",
            "Create a ready video with no media (development and tests: "
            "`MOOSIC_VIDEO_READY_ON_CREATE`; otherwise 403)",
            {201: "Video"},
            (*SIGNED_IN, 403, 413),
            body=video_body,
            tag="videos",
        ),
        Endpoint(
            "GET",
            "/v1/videos/{video_id}",
            "A video with its live totals (`get_video`); ETag, Cache-Control, 304",
            {200: "Video", 304: None},
            (*SIGNED_IN, 404),
            path_params=VIDEO_PARAM,
            tag="videos",
        ),
        Endpoint(
            "GET",
            "/v1/videos/{video_id}/like",
            "Whether the caller likes the video (`like_status`)",
            {200: "LikeStatus"},
            (*SIGNED_IN, 404),
            path_params=VIDEO_PARAM,
            tag="videos",
        ),
        Endpoint(
            "PUT",
            "/v1/videos/{video_id}/like",
            "Like the video (`like`; idempotent)",
            {200: "LikeChange"},
            (*SIGNED_IN, 404, 409),
            path_params=VIDEO_PARAM,
            tag="videos",
        ),
        Endpoint(
            "DELETE",
            "/v1/videos/{video_id}/like",
            "Take the like back (`unlike`; idempotent)",
            {200: "LikeChange"},
            (*SIGNED_IN, 404, 409),
            path_params=VIDEO_PARAM,
            tag="videos",
        ),
        Endpoint(
            "GET",
            "/v1/videos/{video_id}/comments",
            "A page of comments, newest first (`comments`); ETag, Cache-Control, 304",
            {200: "CommentPage", 304: None},
            (*SIGNED_IN, 404),
            path_params=VIDEO_PARAM,
            query=comments_query,
            tag="videos",
        ),
        Endpoint(
            "POST",
            "/v1/videos/{video_id}/comments",
            "Comment (`comment`); 200 when `client_msg_id` repeats an earlier one",
            {200: "CommentAdded", 201: "CommentAdded"},
            (*SIGNED_IN, 404, 409, 413),
            body=comment_body,
            path_params=VIDEO_PARAM,
            tag="videos",
        ),
        Endpoint(
            "DELETE",
            "/v1/videos/{video_id}/comments/{comment_id}",
            "Delete a comment: its author or the video's owner (`delete_comment`)",
            {200: "CommentDeleted"},
            (*SIGNED_IN, 403, 404),
            path_params=comment_path,
            tag="videos",
        ),
        Endpoint(
            "POST",
            "/v1/videos/{video_id}/shares",
            "Share to a DM or a group as a message carrying the video (`share`); 200 when "
            "`client_msg_id` repeats",
            {200: "Shared", 201: "Shared"},
            (*SIGNED_IN, 403, 404, 409, 413),
            body=share_body,
            path_params=VIDEO_PARAM,
            tag="videos",
        ),
    ]
