"""Videos: like/unlike counted once, who sees what, comment retries and deletion, shares."""

from __future__ import annotations

from handlers import social
from handlers.channels import dm_channel
from storage.videos import VideoStatus
from tests.handlers.conftest import World
from tests.handlers.test_chat import refused


async def test_like_and_unlike_are_counted_once_each(world: World) -> None:
    owner, fan = await world.user("ann"), await world.user("bob")
    video = await world.video(owner)
    ctx = world.ctx(fan)
    first = await social.like(ctx, social.LikeParams(video_id=video.id))
    second = await social.like(ctx, social.LikeParams(video_id=video.id))
    assert (first["changed"], second["changed"]) == (True, False)
    assert (await social.like_status(ctx, social.LikeStatusParams(video_id=video.id)))["liked"]
    assert world.hot_counts.changes == [(video.id, 1, 0, 0)]
    gone = await social.unlike(ctx, social.UnlikeParams(video_id=video.id))
    gone_again = await social.unlike(ctx, social.UnlikeParams(video_id=video.id))
    assert (gone["changed"], gone_again["changed"]) == (True, False)
    assert world.hot_counts.changes == [(video.id, 1, 0, 0), (video.id, -1, 0, 0)]
    assert await world.store.count_likes(video.id) == 0
    got = await social.get_video(ctx, social.GetVideoParams(video_id=video.id))
    assert (got["likes"], got["version"]) == (0, 2)  # the live totals, not the stored ones


async def test_an_unready_video_is_hidden_from_others_and_not_likable_by_its_owner(
    world: World,
) -> None:
    owner, fan = await world.user("ann"), await world.user("bob")
    video = await world.video(owner, VideoStatus.PROCESSING)
    await refused(social.like(world.ctx(fan), social.LikeParams(video_id=video.id)), "not_found")
    await refused(
        social.get_video(world.ctx(fan), social.GetVideoParams(video_id=video.id)), "not_found"
    )
    await refused(
        social.like(world.ctx(owner), social.LikeParams(video_id=video.id)), "video_not_ready"
    )
    seen = await social.get_video(world.ctx(owner), social.GetVideoParams(video_id=video.id))
    assert seen["status"] == "processing"
    assert world.hot_counts.changes == []


async def test_a_repeated_comment_is_stored_pushed_and_counted_once(world: World) -> None:
    owner = await world.user("ann")
    video = await world.video(owner)
    params = social.CommentParams(video_id=video.id, text="nice!", client_msg_id="c-1")
    first = await social.comment(world.ctx(owner), params)
    again = await social.comment(world.ctx(owner), params)
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    assert again["comment_id"] == first["comment_id"]
    [push] = world.fanout.on(f"video:{video.id}")
    assert push["op"] == "comment"
    assert push["comment_id"] == first["comment_id"]
    assert world.hot_counts.changes == [(video.id, 0, 1, 0)]
    await refused(
        social.comment(world.ctx(owner), social.CommentParams(video_id=video.id, text="  ")),
        "invalid_params",
    )


async def test_a_comment_is_deleted_by_its_author_or_the_videos_owner_only(world: World) -> None:
    owner, author, eve = [await world.user(n) for n in ("ann", "bob", "eve")]
    video = await world.video(owner)
    ids = []
    for _ in range(2):
        made = await social.comment(
            world.ctx(author), social.CommentParams(video_id=video.id, text="hey")
        )
        ids.append(made["comment_id"])
    delete = social.DeleteCommentParams
    await refused(
        social.delete_comment(world.ctx(eve), delete(video_id=video.id, comment_id=ids[0])),
        "forbidden",
    )
    await social.delete_comment(world.ctx(author), delete(video_id=video.id, comment_id=ids[0]))
    await social.delete_comment(world.ctx(owner), delete(video_id=video.id, comment_id=ids[1]))
    await refused(
        social.delete_comment(world.ctx(owner), delete(video_id=video.id, comment_id=ids[1])),
        "not_found",
    )
    pushes = [p for p in world.fanout.on(f"video:{video.id}") if p["op"] == "comment_deleted"]
    assert [p["comment_id"] for p in pushes] == ids
    assert sum(c[2] for c in world.hot_counts.changes) == 0  # two added, two taken back


async def test_shares_go_to_dms_and_groups_only_and_count_once(world: World) -> None:
    owner, bob = await world.user("ann"), await world.user("bob")
    video = await world.video(owner)
    await refused(
        social.share(world.ctx(bob), social.ShareParams(video_id=video.id, channel="room:a")),
        "invalid_params",
    )
    dm = dm_channel(owner, bob)
    params = social.ShareParams(video_id=video.id, channel=dm, client_msg_id="s-1")
    first = await social.share(world.ctx(bob), params)
    again = await social.share(world.ctx(bob), params)
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    [event] = world.fanout.on(dm)
    assert event["data"] == {
        "type": "video_share",
        "video": {"video_id": video.id, "title": "My cat", "owner": owner},
    }
    assert world.hot_counts.changes == [(video.id, 0, 0, 1)]
