"""The follow and feed routes' entries in the OpenAPI document (:mod:`gateway.http.openapi` adds
them)."""

from __future__ import annotations

from typing import Any

from gateway.http.openapi import (
    BOOLEAN,
    NULLABLE_STRING,
    SIGNED_IN,
    STORE_ID,
    STRING,
    Endpoint,
    _object,
    _ref,
    _struct_schema,
)
from gateway.http.openapi_social import COUNT, VIDEO_PARAM
from gateway.settings import Settings
from handlers import follows
from handlers.channels import ID_PATTERN

USER_PARAM: dict[str, dict[str, Any]] = {
    "user_id": {"type": "string", "minLength": 1, "maxLength": 64}
}
"""The reads take any id (an unknown one has no followers)."""
OTHER_USER_PARAM: dict[str, dict[str, Any]] = {
    "user_id": {
        "type": "string",
        "pattern": f"^{ID_PATTERN}$",
        "description": "a user id, not the caller's own (that is `invalid_params`, 400)",
    }
}
"""Follow, unfollow, block and unblock check the id's shape, and refuse the caller's own."""


def schemas() -> dict[str, Any]:
    return {
        "FollowChange": _object({"user_id": STRING, "following": BOOLEAN, "changed": BOOLEAN}),
        "BlockChange": _object({"user_id": STRING, "blocked": BOOLEAN, "changed": BOOLEAN}),
        "UserPage": _object(
            {
                "user_id": STRING,
                "users": {"type": "array", "items": STRING},
                "next_after": NULLABLE_STRING,
            }
        ),
        "FollowCounts": _object(
            {
                "user_id": STRING,
                "followers": COUNT,
                "following": COUNT,
                "followed_by_you": BOOLEAN,
            }
        ),
        "FeedItem": _object({"item_id": STRING, "by": STRING, "video": _ref("Video")}),
        "FeedPage": _object(
            {
                "items": {"type": "array", "items": _ref("FeedItem")},
                "next_before": NULLABLE_STRING,
            }
        ),
        "Reshared": _object({"video_id": STRING, "item_id": NULLABLE_STRING, "duplicate": BOOLEAN}),
    }


def endpoints(settings: Settings) -> list[Endpoint]:
    page_query = _struct_schema(follows.FollowersParams, drop=("user_id",))["properties"]
    feed_query = _struct_schema(follows.FeedParams)["properties"]
    feed_query["before"] = {**feed_query["before"], "anyOf": [STORE_ID, {"type": "null"}]}
    return [
        Endpoint(
            "PUT",
            "/v1/users/{user_id}/follow",
            "Follow the user (`follow`; idempotent); `blocked` when either blocks the other",
            {200: "FollowChange"},
            (*SIGNED_IN, 403, 404),
            path_params=OTHER_USER_PARAM,
            tag="follows",
        ),
        Endpoint(
            "DELETE",
            "/v1/users/{user_id}/follow",
            "Stop following the user (`unfollow`; idempotent)",
            {200: "FollowChange"},
            SIGNED_IN,
            path_params=OTHER_USER_PARAM,
            tag="follows",
        ),
        Endpoint(
            "GET",
            "/v1/users/{user_id}/followers",
            "A page of the user's followers in id order (`followers`); ETag, 304",
            {200: "UserPage", 304: None},
            SIGNED_IN,
            path_params=USER_PARAM,
            query=page_query,
            tag="follows",
        ),
        Endpoint(
            "GET",
            "/v1/users/{user_id}/following",
            "A page of the users the user follows, in id order (`following`); ETag, 304",
            {200: "UserPage", 304: None},
            SIGNED_IN,
            path_params=USER_PARAM,
            query=page_query,
            tag="follows",
        ),
        Endpoint(
            "GET",
            "/v1/users/{user_id}/follow-counts",
            "Followers and following totals, and whether the caller follows the user "
            "(`follow_counts`)",
            {200: "FollowCounts"},
            SIGNED_IN,
            path_params=USER_PARAM,
            tag="follows",
        ),
        Endpoint(
            "PUT",
            "/v1/users/{user_id}/block",
            "Block the user (`block`; idempotent): ends the follows both ways",
            {200: "BlockChange"},
            SIGNED_IN,
            path_params=OTHER_USER_PARAM,
            tag="follows",
        ),
        Endpoint(
            "DELETE",
            "/v1/users/{user_id}/block",
            "Unblock the user (`unblock`; idempotent)",
            {200: "BlockChange"},
            SIGNED_IN,
            path_params=OTHER_USER_PARAM,
            tag="follows",
        ),
        Endpoint(
            "GET",
            "/v1/feed",
            "A page of the caller's home feed, newest first (`feed`); ETag, 304",
            {200: "FeedPage", 304: None},
            SIGNED_IN,
            query=feed_query,
            tag="follows",
        ),
        Endpoint(
            "POST",
            "/v1/videos/{video_id}/reshares",
            "Re-share a ready video to the caller's followers (`reshare`; counted as a share); "
            "200 when the caller had re-shared it already",
            {200: "Reshared", 201: "Reshared"},
            (*SIGNED_IN, 404, 409),
            path_params=VIDEO_PARAM,
            tag="follows",
        ),
    ]
