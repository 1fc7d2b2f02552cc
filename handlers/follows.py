"""Follows, blocks and the home feed.

Ops: ``follow``, ``unfollow``, ``followers``, ``following``, ``follow_counts``, ``block``,
``unblock``, ``feed``, ``reshare``. REST routes call the same functions.

Rules:

- Following is idempotent (``changed`` says whether it did anything); nobody follows
  themselves, and nobody follows a user who blocked them or whom they block (``blocked``).
- Blocking removes the follow edges between the two users, both ways; a blocked user can no
  longer follow the blocker or write to their DM channel (``blocked``, see
  :func:`handlers.channels.authorize_write`). It takes effect for posts made from then on.
- The feed lists ready videos only: a video rejected or taken down after it was posted drops out
  of every feed page. How posts get into feeds is :mod:`handlers.feed`.
- ``reshare`` posts someone else's ready video to the caller's own followers through the same
  fan-out as an original post, and counts as a share (once per user and video).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec

from handlers import feed as feeds
from handlers import social
from handlers.base import Context, Params, Result, operation
from handlers.channels import is_blocked, is_user_id
from handlers.errors import BLOCKED, INVALID_PARAMS, NOT_FOUND, OpError
from storage import ids
from storage.videos import VideoStatus

UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
MAX_USERS_PAGE = 200
MAX_FEED_PAGE = 50


class FollowParams(Params, tag="follow"):
    user_id: UserId


class UnfollowParams(Params, tag="unfollow"):
    user_id: UserId


class FollowersParams(Params, tag="followers"):
    user_id: UserId
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_USERS_PAGE)] = 50
    after: UserId | None = None


class FollowingParams(Params, tag="following"):
    user_id: UserId
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_USERS_PAGE)] = 50
    after: UserId | None = None


class FollowCountsParams(Params, tag="follow_counts"):
    user_id: UserId


class BlockParams(Params, tag="block"):
    user_id: UserId


class UnblockParams(Params, tag="unblock"):
    user_id: UserId


class FeedParams(Params, tag="feed"):
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_FEED_PAGE)] = 20
    before: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


class ReshareParams(Params, tag="reshare"):
    video_id: social.VideoId


def _other_user(ctx: Context, user_id: str, verb: str) -> str:
    if not is_user_id(user_id):
        raise OpError(
            INVALID_PARAMS, "user_id is 1-64 of letters, digits, '_', '-' - at `$.user_id`"
        )
    if user_id == ctx.user_id:
        raise OpError(INVALID_PARAMS, f"you cannot {verb} yourself - at `$.user_id`")
    return user_id


async def _existing_user(ctx: Context, user_id: str) -> None:
    if await ctx.services.store.get_user(user_id) is None:
        raise OpError(NOT_FOUND, f"no user {user_id}")


@operation(FollowParams)
async def follow(ctx: Context, params: FollowParams) -> Result:
    """Follow a user; their posts from now on reach the caller's feed."""
    target = _other_user(ctx, params.user_id, "follow")
    await _existing_user(ctx, target)
    services = ctx.services
    if await is_blocked(services, target, ctx.user_id):
        raise OpError(BLOCKED, "this user blocked you")
    if await is_blocked(services, ctx.user_id, target):
        raise OpError(BLOCKED, "you blocked this user: unblock them first")
    changed = await services.store.follow(ctx.user_id, target)
    if changed and services.notifier is not None:
        services.notifier.follow(ctx.user_id, target)  # a push if they are not connected
    return {"user_id": target, "following": True, "changed": changed}


@operation(UnfollowParams)
async def unfollow(ctx: Context, params: UnfollowParams) -> Result:
    """Stop following a user; their posts from now on no longer reach the caller's feed."""
    target = _other_user(ctx, params.user_id, "unfollow")
    changed = await ctx.services.store.unfollow(ctx.user_id, target)
    return {"user_id": target, "following": False, "changed": changed}


def _users_page(user_id: str, users: list[str], limit: int) -> Result:
    return {
        "user_id": user_id,
        "users": users,
        "next_after": users[-1] if len(users) == limit else None,
    }


@operation(FollowersParams)
async def followers(ctx: Context, params: FollowersParams) -> Result:
    """A page of the user's followers, in id order; ``next_after`` continues it."""
    users = await ctx.services.store.list_followers(
        params.user_id, limit=params.limit, after=params.after
    )
    return _users_page(params.user_id, users, params.limit)


@operation(FollowingParams)
async def following(ctx: Context, params: FollowingParams) -> Result:
    """A page of the users the user follows, in id order; ``next_after`` continues it."""
    users = await ctx.services.store.list_following(
        params.user_id, limit=params.limit, after=params.after
    )
    return _users_page(params.user_id, users, params.limit)


@operation(FollowCountsParams)
async def follow_counts(ctx: Context, params: FollowCountsParams) -> Result:
    """How many follow the user and how many they follow; whether the caller follows them."""
    store = ctx.services.store
    counts, followed = await asyncio.gather(
        store.follow_counts(params.user_id),
        store.is_following(ctx.user_id, params.user_id),
    )
    return {
        "user_id": params.user_id,
        "followers": max(0, counts.followers),
        "following": max(0, counts.following),
        "followed_by_you": followed,
    }


@operation(BlockParams)
async def block(ctx: Context, params: BlockParams) -> Result:
    """Block a user: the follows between you end, and they can neither follow nor DM you."""
    target = _other_user(ctx, params.user_id, "block")
    changed = await ctx.services.store.block(ctx.user_id, target)
    ctx.services.blocks.put((ctx.user_id, target), True)
    return {"user_id": target, "blocked": True, "changed": changed}


@operation(UnblockParams)
async def unblock(ctx: Context, params: UnblockParams) -> Result:
    """Unblock a user (the follows the block ended stay ended)."""
    target = _other_user(ctx, params.user_id, "unblock")
    changed = await ctx.services.store.unblock(ctx.user_id, target)
    ctx.services.blocks.put((ctx.user_id, target), False)
    return {"user_id": target, "blocked": False, "changed": changed}


@operation(FeedParams)
async def feed(ctx: Context, params: FeedParams) -> Result:
    """A page of the caller's home feed, newest first; ``next_before`` continues it."""
    if params.before is not None and not ids.is_valid(params.before):
        raise OpError(INVALID_PARAMS, "before is a feed item id - at `$.before`")
    page, cursor = await feeds.read_page(
        ctx.services.store, ctx.user_id, limit=params.limit, before=params.before
    )
    videos = await asyncio.gather(*(social.load_video(ctx, item.video_id) for item in page))
    ready = [
        (item, video)
        for item, video in zip(page, videos, strict=True)
        if video is not None and video.status is VideoStatus.READY
    ]
    counts = await asyncio.gather(*(social.live_counts(ctx, video) for _, video in ready))
    items: list[dict[str, Any]] = [
        {"item_id": item.id, "by": item.author, "video": social.video_fields(video, totals)}
        for (item, video), totals in zip(ready, counts, strict=True)
    ]
    return {"items": items, "next_before": cursor}


@operation(ReshareParams)
async def reshare(ctx: Context, params: ReshareParams) -> Result:
    """Post someone else's ready video to the caller's followers; counted as a share, once."""
    video = await social.ready_video(ctx, params.video_id)
    if video.owner == ctx.user_id:
        raise OpError(
            INVALID_PARAMS,
            "your own videos reach your followers when they are ready - at `$.video_id`",
        )
    services = ctx.services
    if services.feeds is None:
        raise OpError(NOT_FOUND, "feeds are not served here")
    item = await services.feeds.publish(video, ctx.user_id)
    if item is not None:
        await services.hot_counts.add(video.id, shares=1)
    return {
        "video_id": video.id,
        "item_id": item.id if item is not None else None,
        "duplicate": item is None,
    }
