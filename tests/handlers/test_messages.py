"""Every frame the server sends, byte for byte as docs/protocol.md shows it (key order too).

Clients and the Redis ``counts`` script depend on these exact bytes: a change of key order or
of a field's presence fails here before it reaches a client.
"""

from __future__ import annotations

from handlers import messages
from handlers.base import UserStatus
from handlers.errors import FORBIDDEN, OpError
from storage.base import Message
from storage.follows import FeedItem
from storage.videos import Comment, Video, VideoCounts, VideoStatus


def test_envelopes() -> None:
    assert messages.result_message(3, {"ts": 1}) == b'{"op":"reply","id":3,"result":{"ts":1}}'
    assert messages.error_message(None, OpError(FORBIDDEN, "no")) == (
        b'{"op":"error","id":null,"code":"forbidden","message":"no","retryable":false}'
    )


def test_event_embeds_data_as_sent_and_client_msg_id_only_when_given() -> None:
    data = b'{"text":  "hi"}'  # the client's bytes, spacing included
    with_id = Message("01M", "room:a", 4, "u1", data, "c-1", 123)
    assert messages.event_message(with_id) == (
        b'{"op":"event","channel":"room:a","message_id":"01M","offset":4,"from":"u1","ts":123,'
        b'"data":{"text":  "hi"},"client_msg_id":"c-1"}'
    )
    without = Message("01N", "room:a", 5, "u1", b"{}", None, 124)
    assert b"client_msg_id" not in messages.event_message(without)
    assert "client_msg_id" not in messages.message_fields(without)


def test_presence_join_leave_typing_read_unsubscribed() -> None:
    assert messages.presence_message("b", UserStatus(online=False, last_seen=7)) == (
        b'{"op":"presence","user":"b","online":false,"last_seen":7}'
    )
    assert messages.presence_message("b", UserStatus(online=True, last_seen=None)) == (
        b'{"op":"presence","user":"b","online":true,"last_seen":null}'
    )
    assert messages.join_leave_message("group:g", "b", up=True) == (
        b'{"op":"join","channel":"group:g","user":"b"}'
    )
    assert messages.join_leave_message("group:g", "b", up=False) == (
        b'{"op":"leave","channel":"group:g","user":"b"}'
    )
    assert (
        messages.typing_message("dm:a:b", "a") == b'{"op":"typing","channel":"dm:a:b","user":"a"}'
    )
    assert messages.receipt_message("dm:a:b", "b", 42) == (
        b'{"op":"read","channel":"dm:a:b","user":"b","offset":42}'
    )
    assert messages.unsubscribed_message("group:g", "removed_from_group") == (
        b'{"op":"unsubscribed","channel":"group:g","reason":"removed_from_group"}'
    )


def test_comment_pushes() -> None:
    comment = Comment("01C", "v", "u", "nice!", 99, client_msg_id="c-1")
    assert messages.comment_message("video:v", comment) == (
        b'{"op":"comment","channel":"video:v","comment_id":"01C","video_id":"v","author":"u",'
        b'"text":"nice!","ts":99,"client_msg_id":"c-1"}'
    )
    assert messages.comment_deleted_message("video:v", "v", "01C") == (
        b'{"op":"comment_deleted","channel":"video:v","video_id":"v","comment_id":"01C"}'
    )


def test_feed_push_is_the_body_encoded_once_behind_each_followers_head() -> None:
    video = Video("v", "a", "My cat", VideoStatus.READY, 1764240000, VideoCounts(1, 2, 3, 4))
    body = messages.feed_body(FeedItem("i", "v", "a"), video)
    assert messages.feed_message("b", body) == (
        b'{"op":"feed","channel":"user:b","item_id":"i","by":"a","video":{"video_id":"v",'
        b'"owner":"a","title":"My cat","created_at":1764240000}}'
    )


def test_counts_are_never_negative() -> None:
    assert messages.counts_message("v", VideoCounts(-1, 2, 3, 9, 5, 61_999), 4) == (
        b'{"op":"counts","channel":"video:v","video_id":"v","likes":0,"comments":2,"shares":3,'
        b'"views":5,"watch_seconds":61,"viewers":4,"version":9}'
    )
