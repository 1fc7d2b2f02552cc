"""Every frame the server sends a client, built in one place: the envelopes and the pushes.

One function per shape (docs/protocol.md, "Frames" and "Pushes"), each returning the encoded
JSON payload that goes, once encoded, to every subscriber on every node (the hub frames it
once per node). Handlers, the WebSocket transport and the fan-out build no frame themselves:

- envelopes: :func:`result_message` (``reply``), :func:`error_message` (``error``);
- stored events: :func:`event_message` (``event``; :func:`message_fields` is the stored
  message as ``history`` lists it too);
- ephemeral pushes: :func:`presence_message`, :func:`join_leave_message`,
  :func:`typing_message`, :func:`receipt_message` (``read``), :func:`comment_message`,
  :func:`comment_deleted_message`, :func:`feed_body` and :func:`feed_message` (``feed``),
  :func:`counts_message`, :func:`unsubscribed_message`.

The Redis script of the hot counters builds the ``counts`` bytes on its own (it runs inside
Redis, in ``gateway.fanout.counts``): it must build the same bytes as :func:`counts_message`.
"""

from __future__ import annotations

from typing import Any

import orjson

from handlers.base import UserStatus
from handlers.errors import OpError
from storage.base import Message
from storage.follows import FeedItem
from storage.videos import Comment, Video, VideoCounts

# -- envelopes ---------------------------------------------------------------------------------


def result_message(request_id: int | None, result: Any) -> bytes:
    """The answer to a request that succeeded: ``{"op": "reply", "id", "result"}``."""
    return orjson.dumps({"op": "reply", "id": request_id, "result": result})


def error_message(request_id: int | None, error: OpError) -> bytes:
    """The answer to a request that failed: ``{"op": "error", "id", "code", "message",
    "retryable"}`` (``id`` null when the request had none or it could not be read)."""
    return orjson.dumps({"op": "error", "id": request_id, **error.to_dict()})


# -- stored events -----------------------------------------------------------------------------


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


def event_message(message: Message) -> bytes:
    """The ``event`` push every subscriber of the message's channel receives, encoded once."""
    return orjson.dumps({"op": "event", "channel": message.channel, **message_fields(message)})


# -- ephemeral pushes --------------------------------------------------------------------------


def presence_message(user: str, status: UserStatus) -> bytes:
    """A watched user went online or offline."""
    return orjson.dumps(
        {"op": "presence", "user": user, "online": status.online, "last_seen": status.last_seen}
    )


def join_leave_message(channel: str, user: str, *, up: bool) -> bytes:
    """A user's first subscription to a ``dm:``/``group:`` channel began (``join``), or their
    last one ended (``leave``)."""
    return orjson.dumps({"op": "join" if up else "leave", "channel": channel, "user": user})


def typing_message(channel: str, user: str) -> bytes:
    return orjson.dumps({"op": "typing", "channel": channel, "user": user})


def receipt_message(channel: str, user: str, offset: int) -> bytes:
    """The ``read`` push the channel's subscribers get when a user's read position moves."""
    return orjson.dumps({"op": "read", "channel": channel, "user": user, "offset": offset})


def comment_fields(comment: Comment) -> dict[str, Any]:
    """Return a comment as the wire shows it (in ``comments`` pages and ``comment`` pushes)."""
    fields: dict[str, Any] = {
        "comment_id": comment.id,
        "video_id": comment.video_id,
        "author": comment.author,
        "text": comment.text,
        "ts": comment.ts,
    }
    if comment.client_msg_id is not None:
        fields["client_msg_id"] = comment.client_msg_id
    if comment.deleted:
        fields["deleted"] = True
    return fields


def comment_message(channel: str, comment: Comment) -> bytes:
    """A new comment, on its video's channel."""
    return orjson.dumps({"op": "comment", "channel": channel, **comment_fields(comment)})


def comment_deleted_message(channel: str, video_id: str, comment_id: str) -> bytes:
    return orjson.dumps(
        {
            "op": "comment_deleted",
            "channel": channel,
            "video_id": video_id,
            "comment_id": comment_id,
        }
    )


def feed_body(item: FeedItem, video: Video) -> bytes:
    """The ``feed`` push without its head: :func:`feed_message` puts ``"op"`` and ``"channel"``
    in front of it for each follower, so the body is encoded once per post."""
    body: dict[str, Any] = {
        "item_id": item.id,
        "by": item.author,
        "video": {
            "video_id": video.id,
            "owner": video.owner,
            "title": video.title,
            "created_at": video.created_at,
        },
    }
    return orjson.dumps(body)[1:]  # without the opening brace


def feed_message(user: str, body: bytes) -> bytes:
    """The ``feed`` push on ``user:{user}`` around a :func:`feed_body`."""
    return b'{"op":"feed","channel":"user:' + user.encode() + b'",' + body


def counts_message(video_id: str, counts: VideoCounts, viewers: int) -> bytes:
    """A video's absolute totals and viewers, on its channel (coalesced by the hot counters)."""
    return orjson.dumps(
        {
            "op": "counts",
            "channel": "video:" + video_id,
            "video_id": video_id,
            "likes": max(0, counts.likes),
            "comments": max(0, counts.comments),
            "shares": max(0, counts.shares),
            "views": max(0, counts.views),
            "watch_seconds": max(0, counts.watch_ms) // 1000,
            "viewers": viewers,
            "version": counts.version,
        }
    )


def unsubscribed_message(channel: str, reason: str) -> bytes:
    """The server ended a subscription (e.g. ``removed_from_group``)."""
    return orjson.dumps({"op": "unsubscribed", "channel": channel, "reason": reason})
