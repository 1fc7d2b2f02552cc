"""REST routes of follows, blocks, the home feed and re-shares; the same handlers as the ops.

The feed and the follow lists are per-user reads (:attr:`Cache.PRIVATE`): they answer with an
``ETag`` and ``304 Not Modified`` to a matching ``If-None-Match``, but no shared cache may keep
them (``private, no-cache``).
"""

from __future__ import annotations

from gateway.http.routes import (
    BOOLEAN,
    COUNT,
    NULLABLE_STRING,
    SIGNED_IN,
    STRING,
    Cache,
    RouteTable,
    Schema,
    cursor,
    obj,
    ref,
)
from gateway.http.social import VIDEO_PARAM
from handlers import follows
from handlers.channels import ID_PATTERN

USER_PARAM: dict[str, Schema] = {"user_id": {"type": "string", "minLength": 1, "maxLength": 64}}
"""The reads take any id (an unknown one has no followers)."""
OTHER_USER_PARAM: dict[str, Schema] = {
    "user_id": {
        "type": "string",
        "pattern": f"^{ID_PATTERN}$",
        "description": "a user id, not the caller's own (that is `invalid_params`, 400)",
    }
}
"""Follow, unfollow, block and unblock check the id's shape, and refuse the caller's own."""

ROUTES = RouteTable(
    {
        "FollowChange": obj({"user_id": STRING, "following": BOOLEAN, "changed": BOOLEAN}),
        "BlockChange": obj({"user_id": STRING, "blocked": BOOLEAN, "changed": BOOLEAN}),
        "UserPage": obj(
            {
                "user_id": STRING,
                "users": {"type": "array", "items": STRING},
                "next_after": NULLABLE_STRING,
            }
        ),
        "FollowCounts": obj(
            {
                "user_id": STRING,
                "followers": COUNT,
                "following": COUNT,
                "followed_by_you": BOOLEAN,
            }
        ),
        "FeedItem": obj({"item_id": STRING, "by": STRING, "video": ref("Video")}),
        "FeedPage": obj(
            {
                "items": {"type": "array", "items": ref("FeedItem")},
                "next_before": NULLABLE_STRING,
            }
        ),
        "Reshared": obj({"video_id": STRING, "item_id": NULLABLE_STRING, "duplicate": BOOLEAN}),
    },
    tag="follows",
)

ROUTES.op(
    "PUT",
    "/v1/users/{user_id}/follow",
    follows.follow,
    "Follow the user (`follow`; idempotent); `blocked` when either blocks the other",
    ok={200: "FollowChange"},
    errors=(*SIGNED_IN, 403, 404),
    path_params=OTHER_USER_PARAM,
)
ROUTES.op(
    "DELETE",
    "/v1/users/{user_id}/follow",
    follows.unfollow,
    "Stop following the user (`unfollow`; idempotent)",
    ok={200: "FollowChange"},
    errors=SIGNED_IN,
    path_params=OTHER_USER_PARAM,
)
ROUTES.op(
    "GET",
    "/v1/users/{user_id}/followers",
    follows.followers,
    "A page of the user's followers in id order (`followers`); ETag, 304",
    ok={200: "UserPage"},
    errors=SIGNED_IN,
    path_params=USER_PARAM,
    cache=Cache.PRIVATE,
)
ROUTES.op(
    "GET",
    "/v1/users/{user_id}/following",
    follows.following,
    "A page of the users the user follows, in id order (`following`); ETag, 304",
    ok={200: "UserPage"},
    errors=SIGNED_IN,
    path_params=USER_PARAM,
    cache=Cache.PRIVATE,
)
ROUTES.op(
    "GET",
    "/v1/users/{user_id}/follow-counts",
    follows.follow_counts,
    "Followers and following totals, and whether the caller follows the user (`follow_counts`)",
    ok={200: "FollowCounts"},
    errors=SIGNED_IN,
    path_params=USER_PARAM,
)
ROUTES.op(
    "PUT",
    "/v1/users/{user_id}/block",
    follows.block,
    "Block the user (`block`; idempotent): ends the follows both ways",
    ok={200: "BlockChange"},
    errors=SIGNED_IN,
    path_params=OTHER_USER_PARAM,
)
ROUTES.op(
    "DELETE",
    "/v1/users/{user_id}/block",
    follows.unblock,
    "Unblock the user (`unblock`; idempotent)",
    ok={200: "BlockChange"},
    errors=SIGNED_IN,
    path_params=OTHER_USER_PARAM,
)
ROUTES.op(
    "GET",
    "/v1/feed",
    follows.feed,
    "A page of the caller's home feed, newest first (`feed`); ETag, 304",
    ok={200: "FeedPage"},
    errors=SIGNED_IN,
    fields={"before": cursor},
    cache=Cache.PRIVATE,
)
ROUTES.op(
    "POST",
    "/v1/videos/{video_id}/reshares",
    follows.reshare,
    "Re-share a ready video to the caller's followers (`reshare`; counted as a share); "
    "200 when the caller had re-shared it already",
    ok={200: "Reshared", 201: "Reshared"},
    errors=(*SIGNED_IN, 404, 409),
    path_params=VIDEO_PARAM,
)
