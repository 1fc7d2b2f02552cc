"""Presence ops: who is in a channel, contacts' online status (and its changes), typing."""

from __future__ import annotations

from typing import Annotated

import msgspec

from handlers.base import Context, Params, Result, operation
from handlers.channels import Kind, authorize_read, authorize_write, parse_channel
from handlers.chat import Channel
from handlers.errors import INVALID_PARAMS, TOO_MANY_SUBSCRIPTIONS, OpError
from handlers.messages import typing_message

WATCH_PREFIX = "~presence:"
"""Internal channel carrying one user's online/offline pushes (see gateway.fanout.presence)."""
PRESENCE_LIST_LIMIT = 1000
UserId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
UserList = Annotated[list[UserId], msgspec.Meta(min_length=1, max_length=200)]


class PresenceParams(Params, tag="presence"):
    channel: Channel


class WatchPresenceParams(Params, tag="watch_presence"):
    users: UserList


class UnwatchPresenceParams(Params, tag="unwatch_presence"):
    users: UserList


class TypingParams(Params, tag="typing"):
    channel: Channel


@operation(PresenceParams)
async def presence(ctx: Context, params: PresenceParams) -> Result:
    """Who is subscribed to the channel now, on any node; video channels give a count only."""
    channel = parse_channel(params.channel)
    await authorize_read(ctx, channel)
    users, count = await ctx.services.presence.here(channel.name, PRESENCE_LIST_LIMIT)
    if channel.kind is Kind.VIDEO:
        return {"channel": channel.name, "viewers": count}
    return {"channel": channel.name, "users": users, "count": count}


@operation(WatchPresenceParams)
async def watch_presence(ctx: Context, params: WatchPresenceParams) -> Result:
    """Return the users' status now and push each change (``presence`` pushes) from then on."""
    session = ctx.require_session()
    users = list(dict.fromkeys(params.users))
    new = [u for u in users if not session.is_subscribed(WATCH_PREFIX + u)]
    limit = ctx.services.limits.max_watched_users
    if session.subscribed(WATCH_PREFIX) + len(new) > limit:
        raise OpError(TOO_MANY_SUBSCRIPTIONS, f"a connection watches at most {limit} users")
    # Watch first, then read: a change between the two is pushed, never missed.
    for user in new:
        await session.subscribe(WATCH_PREFIX + user)
        session.activate(WATCH_PREFIX + user, [], 0, "")
    statuses = await ctx.services.presence.statuses(users)
    return {
        "users": {
            user: {"online": status.online, "last_seen": status.last_seen}
            for user, status in statuses.items()
        }
    }


@operation(UnwatchPresenceParams)
async def unwatch_presence(ctx: Context, params: UnwatchPresenceParams) -> Result:
    session = ctx.require_session()
    stopped = [u for u in dict.fromkeys(params.users) if session.unsubscribe(WATCH_PREFIX + u)]
    return {"unwatched": stopped}


@operation(TypingParams)
async def typing(ctx: Context, params: TypingParams) -> Result:
    """Tell the channel the caller is typing; at most one push per user and channel per interval."""
    channel = parse_channel(params.channel)
    if channel.kind not in (Kind.DM, Kind.GROUP, Kind.ROOM):
        raise OpError(INVALID_PARAMS, "typing is for dm, group and room channels - at `$.channel`")
    await authorize_write(ctx, channel)
    services = ctx.services
    if not services.typing.allow((ctx.user_id, channel.name), services.limits.typing_interval):
        return {"channel": channel.name, "sent": False}
    await services.fanout.publish(channel.name, typing_message(channel.name, ctx.user_id))
    return {"channel": channel.name, "sent": True}
