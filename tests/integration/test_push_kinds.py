"""Push notifications of mentions, follows, comments and videos, and the preferences that
silence or hold them, against the real app (SQLite, file sink).

Notifications are read back from the file sink's JSON lines. Each test that checks something
was *not* sent also makes a notification that is sent, and waits for it: what was decided
before it (one decider, in order) has been decided by then.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.http.media import MEDIA
from gateway.keys import SERVICES, STORE
from media.model import Change, VideoState
from storage.videos import VideoStatus
from tests.integration.test_media import FAST, clip_bytes, new_upload, post_form
from tests.integration.test_push import dm, idle, say, sent, until_none_pending, wait_sent
from tests.support.clients import TIMEOUT, bearer, register

__all__ = ["clip_bytes"]  # the module fixture, shared with test_media


async def device(client: Any, account: dict[str, Any]) -> str:
    async with client.post(
        "/v1/devices",
        json={
            "platform": "fcm",
            "token": account["user_id"] * 3,
            "app_version": "2.0",
            "locale": "en",
        },
        headers=bearer(account),
    ) as r:
        assert r.status == 201
        return str((await r.json())["device_id"])


async def follow(client: Any, follower: dict[str, Any], user: dict[str, Any]) -> None:
    async with client.put(f"/v1/users/{user['user_id']}/follow", headers=bearer(follower)) as r:
        assert r.status == 200, await r.json()


async def comment(client: Any, account: dict[str, Any], video_id: str, text: str) -> None:
    async with client.post(
        f"/v1/videos/{video_id}/comments", json={"text": text}, headers=bearer(account)
    ) as r:
        assert r.status == 201, await r.json()


async def settings_of(client: Any, account: dict[str, Any], body: dict[str, Any]) -> Any:
    async with client.put("/v1/notifications/settings", json=body, headers=bearer(account)) as r:
        assert r.status == 200, await r.json()
        return await r.json()


async def group(client: Any, owner: dict[str, Any], *members: dict[str, Any]) -> str:
    async with client.post(
        "/v1/groups",
        json={"name": "crew", "members": [m["user_id"] for m in members]},
        headers=bearer(owner),
    ) as r:
        assert r.status == 201
        return "group:" + (await r.json())["group_id"]


def lines_for(folder: Path, account: dict[str, Any]) -> list[dict[str, Any]]:
    return [line for line in sent(folder) if line["user_id"] == account["user_id"]]


async def test_a_follow_burst_is_one_notification_with_a_count(
    make_client: Callable[..., Any], tmp_path: Path
) -> None:
    client = await make_client(push_delay=1.5, push_poll=0.05)
    bob = await register(client, "bob")
    fans = [await register(client, name) for name in ("ann", "cid", "dan")]
    bob_device = await device(client, bob)
    for fan in fans:
        await follow(client, fan, bob)
    await follow(client, fans[0], bob)  # again: no change, no notification

    (line,) = await wait_sent(tmp_path / "push", 1)
    assert (line["user_id"], line["device_id"], line["platform"]) == (
        bob["user_id"],
        bob_device,
        "fcm",
    )
    assert (line["kind"], line["conversation"], line["count"]) == (
        "follow",
        f"follow:{bob['user_id']}",
        3,
    )
    assert (line["title"], line["body"]) == ("3 new followers", "")
    assert (line["sender"], line["sender_name"]) == (fans[-1]["user_id"], "dan")
    await until_none_pending(client, bob)
    # The followers were told nothing; one more follower later is a notification of its own.
    eve = await register(client, "eve")
    await follow(client, eve, bob)
    _, second = await wait_sent(tmp_path / "push", 2)
    assert (second["count"], second["title"]) == (1, "eve followed you")
    assert {line["user_id"] for line in sent(tmp_path / "push")} == {bob["user_id"]}


async def test_a_comment_notifies_the_videos_owner_only(
    make_client: Callable[..., Any], tmp_path: Path
) -> None:
    client = await make_client(
        push_delay=1.5, push_poll=0.05, video_ready_on_create=True, video_cache_seconds=0.0
    )
    ann, bob, cid = [await register(client, name) for name in ("ann", "bob", "cid")]
    for account in (ann, bob, cid):
        await device(client, account)
    async with client.post("/v1/videos", json={"title": "cat"}, headers=bearer(ann)) as r:
        video_id = (await r.json())["video_id"]

    await comment(client, ann, video_id, "my own first")  # the owner's own: no notification
    await comment(client, bob, video_id, "so cute")
    await comment(client, cid, video_id, "  the   best\ncat ")

    (line,) = await wait_sent(tmp_path / "push", 1)
    assert line["user_id"] == ann["user_id"]
    assert (line["kind"], line["conversation"], line["count"]) == (
        "comment",
        f"comment:{video_id}",
        2,
    )
    assert (line["title"], line["body"], line["sender_name"]) == (
        "2 new comments on your video",
        "the best cat",
        "cid",
    )
    await until_none_pending(client, ann)
    for account in (bob, cid):
        assert await client.app[STORE].pending_notifications(account["user_id"]) == []
    assert len(sent(tmp_path / "push")) == 1


async def test_a_video_ready_from_the_pipeline_and_one_rejected_notify_the_owner(
    make_client: Callable[..., Any], tmp_path: Path, clip_bytes: bytes
) -> None:
    client = await make_client(push_delay=0.0, push_poll=0.05, **FAST)
    ann = await register(client, "ann")
    await device(client, ann)
    status, created = await new_upload(client, ann, len(clip_bytes))
    assert status == 201, created
    video_id = created["video_id"]
    status, _ = await post_form(client.session, created["upload"], clip_bytes)
    assert status == 204

    # The local backend transcodes the clip with ffmpeg and records it ready.
    (line,) = await wait_sent(tmp_path / "push", 1)
    assert line["user_id"] == ann["user_id"]
    assert (line["kind"], line["conversation"], line["count"]) == (
        "video_ready",
        f"video_ready:{video_id}",
        1,
    )
    assert (line["title"], line["body"], line["sender"]) == (
        "Your video is ready",
        "my clip",
        "system",
    )

    # A held video rejected through the same ledger the media backend records into.
    store = client.app[STORE]
    held = await store.create_video(ann["user_id"], "held one", status=VideoStatus.MODERATING)
    change = Change(held.id, ann["user_id"], VideoState.MODERATING, VideoState.REJECTED, "nudity")
    assert await client.app[MEDIA].ledger.record(change)
    _, rejected = await wait_sent(tmp_path / "push", 2)
    assert (rejected["kind"], rejected["conversation"]) == (
        "video_rejected",
        f"video_rejected:{held.id}",
    )
    assert (rejected["title"], rejected["body"]) == ("Your video was rejected", "nudity")


async def test_a_mentioned_member_gets_a_mention_the_others_the_message(
    make_client: Callable[..., Any], tmp_path: Path
) -> None:
    client = await make_client(push_delay=0.0, push_poll=0.05)
    ann, bob, cid = [await register(client, name) for name in ("ann", "bob", "cid")]
    await device(client, bob)
    await device(client, cid)
    channel = await group(client, ann, bob, cid)

    await say(client, ann, channel, "@bob did you see @nobody's post?")

    lines = await wait_sent(tmp_path / "push", 2)
    by_user = {line["user_id"]: line for line in lines}
    mention = by_user[bob["user_id"]]
    assert (mention["kind"], mention["conversation"], mention["title"]) == (
        "mention",
        f"mention:{channel}",
        "ann mentioned you in a group",
    )
    assert mention["body"] == "@bob did you see @nobody's post?"
    plain = by_user[cid["user_id"]]
    assert (plain["kind"], plain["conversation"], plain["title"]) == (
        "message",
        channel,
        "ann in a group",
    )
    await until_none_pending(client, bob)
    assert len(sent(tmp_path / "push")) == 2


async def test_a_muted_conversation_and_a_kind_turned_off_notify_nothing(
    make_client: Callable[..., Any], tmp_path: Path
) -> None:
    client = await make_client(push_delay=0.0, push_poll=0.05)
    ann, bob, cid = [await register(client, name) for name in ("ann", "bob", "cid")]
    await device(client, bob)
    channel = await group(client, ann, bob, cid)
    async with client.put(f"/v1/notifications/mutes/{channel}", json={}, headers=bearer(bob)) as r:
        assert (r.status, await r.json()) == (
            200,
            {"channel": channel, "muted": True, "until": None},
        )
    await settings_of(client, bob, {"kinds": {"follow": False}})

    await say(client, ann, channel, "@bob muted, even mentioned")
    await follow(client, cid, bob)
    await say(client, ann, dm(ann, bob), "this one gets through")

    (line,) = await wait_sent(tmp_path / "push", 1)
    assert (line["conversation"], line["body"]) == (dm(ann, bob), "this one gets through")
    await idle(client)
    await until_none_pending(client, bob)
    assert len(sent(tmp_path / "push")) == 1
    notifier = client.app[SERVICES].notifier
    assert notifier.stats.suppressed == 2  # type: ignore[union-attr]

    # Unmuted, the conversation notifies again (this node's decider forgets what it knew).
    async with client.delete(f"/v1/notifications/mutes/{channel}", headers=bearer(bob)) as r:
        assert (await r.json())["changed"] is True
    await say(client, ann, channel, "and now?")
    _, again = await wait_sent(tmp_path / "push", 2)
    assert (again["conversation"], again["body"]) == (channel, "and now?")


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"


async def test_quiet_hours_hold_a_notification_to_their_end_still_collapsing(
    make_client: Callable[..., Any], tmp_path: Path
) -> None:
    client = await make_client(push_delay=0.0, push_poll=0.05)
    ann, bob = await register(client, "ann"), await register(client, "bob")
    await device(client, bob)
    now = time.time()
    minute = int(now // 60) % (24 * 60)  # UTC minute of the day
    # Quiet from a minute ago to the next whole minute, in UTC+00:00.
    end_ms = (int(now // 60) + 1) * 60_000
    answer = await settings_of(
        client,
        bob,
        {
            "quiet_hours": {
                "start": _hhmm(minute - 1),
                "end": _hhmm(minute + 1),
                "timezone": "+00:00",
            }
        },
    )
    if not answer["quiet_now"]:  # the minute turned between reading the clock and the PUT
        now = time.time()
        minute = int(now // 60) % (24 * 60)
        end_ms = (int(now // 60) + 1) * 60_000
        answer = await settings_of(
            client,
            bob,
            {
                "quiet_hours": {
                    "start": _hhmm(minute - 1),
                    "end": _hhmm(minute + 1),
                    "timezone": "+00:00",
                }
            },
        )
    assert answer["quiet_now"] is True

    await say(client, ann, dm(ann, bob), "first")
    await say(client, ann, dm(ann, bob), "second")
    await idle(client)
    pending = await client.app[STORE].pending_notifications(bob["user_id"])
    if time.time() * 1000 < end_ms:  # read inside the quiet hours: held, due at their end
        assert [n.due_at for n in pending] == [end_ms]
    (line,) = await _sent_after(tmp_path)
    assert (line["count"], line["title"], line["body"]) == (2, "2 new messages from ann", "second")
    assert line["ts"] >= end_ms  # held to the end of the quiet hours


async def _sent_after(tmp_path: Path) -> list[dict[str, Any]]:
    """The quiet hours end within a minute: wait for it, generously."""
    async with asyncio.timeout(60 + TIMEOUT):
        while not (found := sent(tmp_path / "push")):
            await asyncio.sleep(0.1)
    return found


async def test_the_cap_counts_every_kind(make_client: Callable[..., Any], tmp_path: Path) -> None:
    client = await make_client(
        push_delay=0.0,
        push_poll=0.05,
        push_per_minute=1,
        video_ready_on_create=True,
        video_cache_seconds=0.0,
    )
    ann, bob = await register(client, "ann"), await register(client, "bob")
    await device(client, bob)
    async with client.post("/v1/videos", json={"title": "dog"}, headers=bearer(bob)) as r:
        video_id = (await r.json())["video_id"]
    while time.time() % 60 > 40:  # both sends must fall in one minute of the cap
        await asyncio.sleep(0.5)
    await follow(client, ann, bob)
    await comment(client, ann, video_id, "woof")

    (first,) = await wait_sent(tmp_path / "push", 1)
    store = client.app[STORE]
    async with asyncio.timeout(TIMEOUT):
        # The other is claimed, refused a slot, and released to the next minute.
        while not (held := await store.pending_notifications(bob["user_id"])) or any(
            n.due_at % 60_000 for n in held
        ):
            await asyncio.sleep(0.02)
    (held_one,) = held
    assert {first["kind"], held_one.conversation.split(":")[0]} == {"follow", "comment"}
    assert len(sent(tmp_path / "push")) == 1
