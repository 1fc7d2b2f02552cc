"""Read receipts and the conversation list: ``read`` and ``conversations``.

A read position is per user and channel, only for ``dm:`` and ``group:`` channels: the offset up
to which the user has read. It only grows, and an offset above the channel's last one is clamped
to it. When it moves, every subscriber of the channel gets a ``read`` push (ephemeral: no offset
in the channel, not stored), the reader's own connections included, so their other devices
follow.

The conversation list is kept by the store, in the same writes that cause it (see
``storage.base``): a DM enters both users' lists with its first message, a group enters a
member's list when they join and leaves it when they are removed, and a sender's own messages
are read. Nothing here writes to it.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from handlers.base import Context, Params, Result, operation
from handlers.channels import Kind, authorize_read, parse_channel
from handlers.errors import FORBIDDEN, OpError
from handlers.messages import receipt_message
from storage.base import Conversation

Channel = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Offset = Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)]
Cursor = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
MAX_CONVERSATIONS_PAGE = 100


class ReadParams(Params, tag="read"):
    channel: Channel
    offset: Offset


class ConversationsParams(Params, tag="conversations"):
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_CONVERSATIONS_PAGE)] = 50
    before: Cursor | None = None


@operation(ReadParams)
async def read(ctx: Context, params: ReadParams) -> Result:
    channel = parse_channel(params.channel)
    if channel.kind is not Kind.DM and channel.kind is not Kind.GROUP:
        raise OpError(FORBIDDEN, "read positions are kept for dm: and group: channels only")
    await authorize_read(ctx, channel)
    services = ctx.services
    mark = await services.store.mark_read(ctx.user_id, channel.name, params.offset)
    if mark.moved:
        await services.fanout.publish(
            channel.name, receipt_message(channel.name, ctx.user_id, mark.last_read)
        )
    return {
        "channel": channel.name,
        "last_read": mark.last_read,
        "unread": max(0, mark.last_offset - mark.last_read),
    }


def conversation_fields(user_id: str, conversation: Conversation) -> dict[str, Any]:
    """Return one list entry as the wire shows it."""
    fields: dict[str, Any] = {"channel": conversation.channel}
    parsed = parse_channel(conversation.channel)
    if parsed.kind is Kind.GROUP:
        fields["group_id"] = parsed.key
        fields["name"] = conversation.name
    elif parsed.peers is not None:
        a, b = parsed.peers
        fields["peer"] = b if a == user_id else a
    fields.update(
        last_offset=conversation.last_offset,
        epoch=conversation.epoch,
        last_ts=conversation.last_ts,
        last_read=conversation.last_read,
        unread=max(0, conversation.last_offset - conversation.last_read),
    )
    return fields


@operation(ConversationsParams)
async def conversations(ctx: Context, params: ConversationsParams) -> Result:
    page = await ctx.services.store.list_conversations(
        ctx.user_id, limit=params.limit, before=params.before
    )
    return {
        "conversations": [conversation_fields(ctx.user_id, c) for c in page],
        "next_before": page[-1].cursor if len(page) == params.limit else None,
    }
