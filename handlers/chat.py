"""Chat ops: subscribe, unsubscribe, publish, history, the long-poll feed, and ping."""

from __future__ import annotations

import time
from typing import Annotated

import msgspec
import orjson

from handlers import channels
from handlers.base import Context, Params, Result, Services, operation
from handlers.channels import authorize_read, authorize_write, parse_channel
from handlers.errors import (
    INVALID_PARAMS,
    MESSAGE_TOO_LARGE,
    TOO_MANY_SUBSCRIPTIONS,
    UNAVAILABLE,
    OpError,
)
from handlers.messages import event_message, message_fields
from handlers.replay import CatchUp

ClientMsgId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Channel = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
MessageId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Offset = Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)]
"""Offsets stay within what every client (JSON numbers) and every store can hold."""


class Since(msgspec.Struct, forbid_unknown_fields=False):
    offset: Offset
    epoch: Annotated[str, msgspec.Meta(max_length=64)] = ""


class SubscribeParams(Params, tag="subscribe"):
    channel: Channel
    since: Since | None = None
    """The last offset (and the epoch) the client saw: recover what it missed."""


class UnsubscribeParams(Params, tag="unsubscribe"):
    channel: Channel


class PublishParams(Params, tag="publish"):
    channel: Channel
    data: msgspec.Raw
    """The message body, any JSON object; kept as the client's bytes, never re-encoded."""
    client_msg_id: ClientMsgId | None = None


class HistoryParams(Params, tag="history"):
    channel: Channel
    limit: Annotated[int, msgspec.Meta(ge=1)] = 50
    before: MessageId | None = None


class EventsParams(Params, tag="events"):
    channel: Channel
    since: Offset | None = None
    timeout: Annotated[float, msgspec.Meta(ge=0)] = 25.0


class PingParams(Params, tag="ping"):
    pass


def message_body(raw: msgspec.Raw, limit: int) -> bytes:
    """Check that a message body is a JSON object within ``limit`` bytes.

    The transports have already checked that the whole frame or request body is valid UTF-8.
    """
    body = bytes(raw)
    if len(body) > limit:
        raise OpError(MESSAGE_TOO_LARGE, f"data is {len(body)} bytes; the limit is {limit}")
    if not body.startswith(b"{"):
        raise OpError(INVALID_PARAMS, "data must be a JSON object - at `$.data`")
    return body


@operation(SubscribeParams)
async def subscribe(ctx: Context, params: SubscribeParams) -> Result:
    """Subscribe; with ``since``, replay what the client missed, then go live, in order."""
    session = ctx.require_session()
    channel = parse_channel(params.channel)
    await authorize_read(ctx, channel)
    if session.is_subscribed(channel.name):
        position = await ctx.services.store.position(channel.name)
        return {"channel": channel.name, "offset": position.offset, "epoch": position.epoch}
    limits = ctx.services.limits
    if session.subscription_count >= limits.max_subscriptions:
        raise OpError(
            TOO_MANY_SUBSCRIPTIONS,
            f"a connection holds at most {limits.max_subscriptions} subscriptions",
        )
    since = params.since
    return await ctx.services.replay.join(
        session,
        channel.name,
        (since.offset, since.epoch) if since else None,
        limits.max_replay,
    )


@operation(UnsubscribeParams)
async def unsubscribe(ctx: Context, params: UnsubscribeParams) -> Result:
    session = ctx.require_session()
    channel = parse_channel(params.channel)
    return {"channel": channel.name, "unsubscribed": session.unsubscribe(channel.name)}


@operation(PublishParams)
async def publish(ctx: Context, params: PublishParams) -> Result:
    channel = parse_channel(params.channel)
    await authorize_write(ctx, channel)
    services = ctx.services
    body = message_body(params.data, services.limits.max_message_bytes)
    return await post_at_home(services, channel, ctx.user_id, body, params.client_msg_id)


async def post_at_home(
    services: Services,
    channel: channels.Channel,
    sender: str,
    body: bytes,
    client_msg_id: str | None,
) -> Result:
    """:func:`post` in the region that orders the channel: here, or forwarded to its home
    (docs/regions.md), whose answer (its offset) is the sender's."""
    plan = services.regions
    if plan is not None and services.forwarder is not None:
        home = plan.remote_home(channel)
        if home is not None:
            return await services.forwarder.publish(home, channel.name, sender, body, client_msg_id)
    return await post(services, channel.name, sender, body, client_msg_id)


async def post(
    services: Services, channel: str, sender: str, body: bytes, client_msg_id: str | None
) -> Result:
    """Store a checked message body from ``sender``, then fan it out: ``publish``'s answer.

    ``publish`` and the server API's publish as ``system`` both come through here (through
    :func:`post_at_home`), and so do publishes another region forwarded to this one.
    """
    stored = await services.store.append(channel, sender, body, client_msg_id)
    message = stored.message
    if not stored.duplicate:
        # Acknowledged only after the store accepted it; fan-out follows the write.
        await services.fanout.publish(
            channel, event_message(message), message.offset, stored.epoch, message.ts
        )
        if services.notifier is not None:
            # Members with no live socket are told by push (decided in the background).
            services.notifier.message(channel, sender, message.offset, message.data)
    return {
        "channel": channel,
        "message_id": message.id,
        "offset": message.offset,
        "epoch": stored.epoch,
        "ts": message.ts,
        "duplicate": stored.duplicate,
    }


@operation(HistoryParams)
async def history(ctx: Context, params: HistoryParams) -> Result:
    channel = parse_channel(params.channel)
    limit = ctx.services.limits.history_max_limit
    if params.limit > limit:
        raise OpError(INVALID_PARAMS, f"limit is at most {limit} - at `$.limit`")
    await authorize_read(ctx, channel)
    services = ctx.services
    plan, forwarder = services.regions, services.forwarder
    home = plan.remote_home(channel) if plan is not None and forwarder is not None else None
    if home is not None and forwarder is not None and not forwarder.is_fresh(channel.name):
        # The local copy may be behind (nobody here follows the channel now): ask the home;
        # when it cannot be reached, the copy is better than nothing.
        try:
            return await forwarder.history(home, channel.name, params.limit, params.before)
        except OpError as exc:
            if exc.kind is not UNAVAILABLE:
                raise
    return await history_page(services, channel.name, params.limit, params.before)


async def history_page(services: Services, channel: str, limit: int, before: str | None) -> Result:
    """One page of a channel's history, newest first: ``history``'s answer (and the server
    API's)."""
    messages = await services.store.history(channel, limit=limit, before=before)
    return {
        "channel": channel,
        "messages": [message_fields(m) for m in messages],
        "next_before": messages[-1].id if len(messages) == limit else None,
    }


@operation(EventsParams)
async def events(ctx: Context, params: EventsParams) -> Result:
    """Return events after ``since`` at once, or wait (bounded) for the next ones."""
    channel = parse_channel(params.channel)
    await authorize_read(ctx, channel)
    services = ctx.services
    limits = services.limits
    timeout = min(params.timeout, limits.longpoll_max_seconds)
    # Watch before reading, so that an event stored between the read and the wait still wakes us.
    async with services.fanout.watch(channel.name) as watcher:
        if params.since is None:  # from now on: only the position is needed
            found = await services.replay.catch_up(channel.name, 0, 0)
            found = CatchUp(found.epoch, found.last, [], True)
        else:
            found = await services.replay.catch_up(
                channel.name, params.since, limits.longpoll_max_events
            )
        since = found.last if params.since is None else params.since
        deadline = time.monotonic() + timeout
        # Any push wakes the watcher (receipts and typing too): wait on until a stored event
        # is there or the time is up.
        while not found.events and (left := deadline - time.monotonic()) > 0:
            if not await watcher.wait(left):
                break
            found = await services.replay.catch_up(channel.name, since, limits.longpoll_max_events)
    events_json = [orjson.Fragment(payload) for _offset, payload in found.events]
    return {
        "channel": channel.name,
        "events": events_json,
        "next_since": found.events[-1][0] if found.events else since,
        "epoch": found.epoch,
    }


@operation(PingParams)
async def ping(ctx: Context, params: PingParams) -> Result:
    return {"ts": int(time.time() * 1000)}
