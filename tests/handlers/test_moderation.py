"""The review queue and a review's decision (the server API's moderation calls), through the
media ledger: approve → ready, reject → rejected, each told to the owner once."""

from __future__ import annotations

import pytest

from handlers.errors import OpError
from handlers.media import REVIEW_CHANNEL, StoreLedger, decide, held_videos
from media.model import Change, VideoState
from storage.videos import VideoStatus
from tests.handlers.conftest import World


async def held_video(world: World, ledger: StoreLedger, owner: str) -> str:
    video = await world.video(owner, VideoStatus.PROCESSING)
    change = Change(
        video.id,
        owner,
        VideoState.PROCESSING,
        VideoState.MODERATING,
        "waiting for review",
        {"renditions": ["72p"], "review": "pending"},
    )
    assert await ledger.record(change)
    return video.id


async def test_held_videos_are_listed_until_decided(world: World) -> None:
    ledger = StoreLedger(world.store, world.fanout)
    owner = await world.user("owner")
    first = await held_video(world, ledger, owner)
    second = await held_video(world, ledger, owner)
    page = await held_videos(world.store, 10, None)
    assert [v["video_id"] for v in page["videos"]] == [second, first]
    assert page["next_before"] is None
    one = await held_videos(world.store, 1, None)
    assert [v["video_id"] for v in one["videos"]] == [second]
    rest = await held_videos(world.store, 1, one["next_before"])
    assert [v["video_id"] for v in rest["videos"]] == [first]

    rejected = await decide(world.store, ledger, first, False, None)
    assert rejected == {"video_id": first, "owner": owner, "state": "rejected"}
    video = await world.store.get_video(first)
    assert video is not None
    assert video.status is VideoStatus.REJECTED
    told = world.fanout.on(f"user:{owner}")[-1]
    assert told["data"] == {
        "type": "video_state",
        "video_id": first,
        "state": "rejected",
        "reason": "the video breaks the content rules",
        "moderation": "rejected",
    }
    assert [v["video_id"] for v in (await held_videos(world.store, 10, None))["videos"]] == [second]

    approved = await decide(world.store, ledger, second, True, None)
    assert approved["state"] == "ready"
    assert (await held_videos(world.store, 10, None))["videos"] == []
    # The queue keeps its entries (stored once per video); listing skips decided ones.
    assert len(await world.store.history(REVIEW_CHANNEL, limit=10, before=None)) == 2


async def test_only_a_held_video_can_be_decided(world: World) -> None:
    ledger = StoreLedger(world.store, world.fanout)
    owner = await world.user("owner")
    ready = await world.video(owner)
    with pytest.raises(OpError) as caught:
        await decide(world.store, ledger, ready.id, True, None)
    assert caught.value.kind.code == "video_not_held"
    with pytest.raises(OpError) as missing:
        await decide(world.store, ledger, "nope", True, None)
    assert missing.value.kind.code == "not_found"
    assert await world.store.history(REVIEW_CHANNEL, limit=10, before=None) == []
