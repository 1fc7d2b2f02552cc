"""What a push notification says: the preview of a message, the title, SNS's per-platform body."""

from __future__ import annotations

import orjson
import pytest

from gateway.push.drain import _title
from gateway.push.sink import Push
from gateway.push.sns import sns_message
from handlers.notify import PREVIEW_CHARS, preview_of


@pytest.mark.parametrize(
    ("data", "preview"),
    [
        (b'{"text": "hi"}', "hi"),
        (b'{"text": "  two\\n\\tlines  "}', "two lines"),
        (b'{"image": "x.png"}', ""),
        (b'{"text": 5}', ""),
        (b"[1, 2]", ""),
        (b"not json", ""),
    ],
)
def test_the_preview_is_the_text_with_its_whitespace_collapsed(data: bytes, preview: str) -> None:
    assert preview_of(data) == preview


def test_a_long_text_is_cut_with_an_ellipsis() -> None:
    cut = preview_of(orjson.dumps({"text": "é" * 500}))
    assert len(cut) == PREVIEW_CHARS
    assert cut.endswith("…")
    assert preview_of(orjson.dumps({"text": "a" * PREVIEW_CHARS})) == "a" * PREVIEW_CHARS


@pytest.mark.parametrize(
    ("count", "conversation", "title"),
    [
        (1, "dm:a:b", "ann"),
        (4, "dm:a:b", "4 new messages from ann"),
        (1, "group:g", "ann in a group"),
        (2, "group:g", "2 new messages in a group"),
        (1, "mention:dm:a:b", "ann mentioned you"),
        (1, "mention:group:g", "ann mentioned you in a group"),
        (3, "mention:dm:a:b", "3 mentions from ann"),
        (3, "mention:group:g", "3 mentions in a group"),
        (1, "follow:u", "ann followed you"),
        (3, "follow:u", "3 new followers"),
        (1, "comment:V", "ann commented on your video"),
        (5, "comment:V", "5 new comments on your video"),
        (1, "video_ready:V", "Your video is ready"),
        (1, "video_rejected:V", "Your video was rejected"),
    ],
)
def test_titles(count: int, conversation: str, title: str) -> None:
    assert _title(count, "ann", conversation) == title


def test_the_sns_body_has_a_payload_per_platform() -> None:
    push = Push("message", "bob", "dm:a:b", 2, "a", "ann", "2 new messages from ann", "yo", 9)
    body = orjson.loads(sns_message(push))
    assert set(body) == {"default", "APNS", "APNS_SANDBOX", "GCM"}
    assert body["default"] == "yo"
    apns = orjson.loads(body["APNS"])
    assert apns["aps"]["alert"] == {"title": "2 new messages from ann", "body": "yo"}
    assert apns["aps"]["thread-id"] == "dm:a:b"
    assert apns["moosic"] == {
        "kind": "message",
        "conversation": "dm:a:b",
        "count": 2,
        "sender": "a",
        "last_offset": 9,
    }
    assert body["APNS_SANDBOX"] == body["APNS"]
    gcm = orjson.loads(body["GCM"])
    assert gcm["notification"] == {
        "title": "2 new messages from ann",
        "body": "yo",
        "tag": "dm:a:b",
    }
    assert gcm["data"]["count"] == "2"  # FCM data values are strings
