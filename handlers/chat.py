"""Chat ops: subscribe, unsubscribe, publish, history, the long-poll feed, and ping."""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
import orjson

from handlers.base import Context, Params, Result, operation
from handlers.channels import authorize_read, authorize_write, parse_channel
from handlers.errors import (
    INVALID_PARAMS,
    MESSAGE_TOO_LARGE,
    TOO_MANY_SUBSCRIPTIONS,
    OpError,
)
from storage.base import Message

ClientMsgId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Channel = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
MessageId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class SubscribeParams(Params, tag="subscribe"):
    channel: Channel


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
    since: Annotated[int, msgspec.Meta(ge=0)] | None = None
    timeout: Annotated[float, msgspec.Meta(ge=0)] = 25.0


class PingParams(Params, tag="ping"):
    pass


def message_fields(message: Message) -> dict[str, Any]:
    """Return a stored message as the wire shows it (``data`` embedded without re-encoding)."""
    fields: dict[str, Any] = {
        "message_id": message.id,
        "offset": message.offset,
        "from": message.sender,
        "ts": message.ts,
        "data": orjson.Fragment(message.data),
    }
    if message.client_msg_id is not None:
        fields["client_msg_id"] = message.client_msg_id
    return fields


def encode_event(message: Message) -> bytes:
    """Encode the push every subscriber of the message's channel receives, once."""
    return orjson.dumps({"op": "event", "channel": message.channel, **message_fields(message)})


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


@operation(SubscribeParams, needs_session=True)
async def subscribe(ctx: Context, params: SubscribeParams) -> Result:
    session = ctx.require_session()
    channel = parse_channel(params.channel)
    await authorize_read(ctx, channel)
    if not session.is_subscribed(channel.name):
        limit = ctx.services.limits.max_subscriptions
        if session.subscription_count >= limit:
            raise OpError(
                TOO_MANY_SUBSCRIPTIONS, f"a connection holds at most {limit} subscriptions"
            )
        await session.subscribe(channel.name)
    position = await ctx.services.store.position(channel.name)
    return {"channel": channel.name, "offset": position.offset, "epoch": position.epoch}


@operation(UnsubscribeParams, needs_session=True)
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
    stored = await services.store.append(channel.name, ctx.user_id, body, params.client_msg_id)
    message = stored.message
    if not stored.duplicate:
        # Acknowledged only after the store accepted it; fan-out follows the write.
        await services.fanout.publish(channel.name, encode_event(message))
    return {
        "channel": channel.name,
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
    messages = await ctx.services.store.history(
        channel.name, limit=params.limit, before=params.before
    )
    return {
        "channel": channel.name,
        "messages": [message_fields(m) for m in messages],
        "next_before": messages[-1].id if len(messages) == params.limit else None,
    }


@operation(EventsParams)
async def events(ctx: Context, params: EventsParams) -> Result:
    """Return events after ``since`` at once, or wait (bounded) for the next ones."""
    channel = parse_channel(params.channel)
    await authorize_read(ctx, channel)
    services = ctx.services
    store = services.store
    limits = services.limits
    timeout = min(params.timeout, limits.longpoll_max_seconds)
    # Watch before reading, so that an event stored between the read and the wait still wakes us.
    async with services.fanout.watch(channel.name) as watcher:
        position = await store.position(channel.name)
        since = position.offset if params.since is None else params.since
        found = await store.read_since(channel.name, since, limit=limits.longpoll_max_events)
        if not found and timeout > 0 and await watcher.wait(timeout):
            found = await store.read_since(channel.name, since, limit=limits.longpoll_max_events)
            position = await store.position(channel.name)
    return {
        "channel": channel.name,
        "events": [message_fields(m) for m in found],
        "next_since": found[-1].offset if found else since,
        "epoch": position.epoch,
    }


@operation(PingParams)
async def ping(ctx: Context, params: PingParams) -> Result:
    return {"ts": int(time.time() * 1000)}
