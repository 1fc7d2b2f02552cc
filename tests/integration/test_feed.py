"""Follows, blocks and the home feed on one node, over real sockets: REST and WebSocket.

The fan-out to 5,000 followers across two gateway processes is in test_feed_fanout.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from gateway.keys import FEEDS, HUB, SERVICES, STORE
from handlers.media import StoreLedger
from media.model import Change, VideoState
from storage.videos import VideoStatus
from tests.integration.test_social import create_video, eventually, get_json
from tests.support.clients import WsClient, bearer, register

FAST = {"video_ready_on_create": True, "video_cache_seconds": 0.0}


@pytest.fixture
async def app(make_client: Any) -> Any:
    return await make_client(**FAST)


async def put(client: Any, path: str, account: dict[str, Any], status: int = 200) -> Any:
    async with client.put(path, headers=bearer(account)) as response:
        body = await response.json()
        assert response.status == status, body
        return body


async def delete(client: Any, path: str, account: dict[str, Any], status: int = 200) -> Any:
    async with client.delete(path, headers=bearer(account)) as response:
        body = await response.json()
        assert response.status == status, body
        return body


async def feed_videos(client: Any, account: dict[str, Any]) -> list[str]:
    page = await get_json(client, "/v1/feed", account)
    return [item["video"]["video_id"] for item in page["items"]]


@asynccontextmanager
async def connected(client: Any, token: str) -> AsyncIterator[WsClient]:
    ws = await WsClient.connect(client, token)
    try:
        yield ws
    finally:
        await ws.close()


async def settled(client: Any) -> None:
    """Wait until this node's background fan-outs are done."""
    assert await client.server.app[FEEDS].wait_idle(10.0)


async def test_follow_is_idempotent_listed_in_pages_and_counted(app: Any) -> None:
    star = await register(app, "star")
    fans = [await register(app, f"fan{i}") for i in range(3)]
    star_id = star["user_id"]
    for fan in fans:
        assert await put(app, f"/v1/users/{star_id}/follow", fan) == {
            "user_id": star_id,
            "following": True,
            "changed": True,
        }
    again = await put(app, f"/v1/users/{star_id}/follow", fans[0])
    assert again["changed"] is False

    ids = sorted(f["user_id"] for f in fans)
    first = await get_json(app, f"/v1/users/{star_id}/followers?limit=2", star)
    assert first["users"] == ids[:2]
    rest = await get_json(
        app, f"/v1/users/{star_id}/followers?limit=2&after={first['next_after']}", star
    )
    assert (rest["users"], rest["next_after"]) == (ids[2:], None)
    following = await get_json(app, f"/v1/users/{fans[0]['user_id']}/following", star)
    assert following["users"] == [star_id]
    counts = await get_json(app, f"/v1/users/{star_id}/follow-counts", fans[0])
    assert counts == {
        "user_id": star_id,
        "followers": 3,
        "following": 0,
        "followed_by_you": True,
    }

    gone = await delete(app, f"/v1/users/{star_id}/follow", fans[0])
    assert (gone["following"], gone["changed"]) == (False, True)
    assert (await delete(app, f"/v1/users/{star_id}/follow", fans[0]))["changed"] is False
    counts = await get_json(app, f"/v1/users/{star_id}/follow-counts", fans[0])
    assert (counts["followers"], counts["followed_by_you"]) == (2, False)

    errors = [
        (await put(app, f"/v1/users/{fans[1]['user_id']}/follow", fans[1], 400))["code"],
        (await put(app, "/v1/users/nobody-here/follow", fans[1], 404))["code"],
    ]
    assert errors == ["invalid_params", "not_found"]


async def test_a_ready_video_reaches_followers_feeds_and_online_followers_live(
    app: Any,
) -> None:
    author, fan, other = [await register(app, n) for n in ("author", "fan", "other")]
    await put(app, f"/v1/users/{author['user_id']}/follow", fan)
    async with connected(app, fan["access_token"]) as ws:
        await ws.result("subscribe", channel=f"user:{fan['user_id']}")
        video_id = await create_video(app, author, "first")
        push = await ws.next_push(op="feed")
    assert push["channel"] == f"user:{fan['user_id']}"
    assert (push["item_id"], push["by"]) == (video_id, author["user_id"])
    assert push["video"]["video_id"] == video_id
    await settled(app)

    page = await get_json(app, "/v1/feed", fan)
    assert [i["item_id"] for i in page["items"]] == [video_id]
    assert page["items"][0]["video"]["status"] == "ready"
    assert page["items"][0]["by"] == author["user_id"]
    assert page["next_before"] is None
    assert await feed_videos(app, other) == []
    async with app.get("/v1/feed", headers=bearer(fan)) as response:
        etag = response.headers["ETag"]
        assert response.headers["Cache-Control"] == "private, no-cache"
    async with app.get("/v1/feed", headers={**bearer(fan), "If-None-Match": etag}) as response:
        assert response.status == 304

    # Over the WebSocket too, newest first, in pages.
    second = await create_video(app, author, "second")
    await settled(app)
    async with connected(app, fan["access_token"]) as ws:
        first_page = await ws.result("feed", limit=1)
        assert [i["item_id"] for i in first_page["items"]] == [second]
        next_page = await ws.result("feed", limit=1, before=first_page["next_before"])
        assert [i["item_id"] for i in next_page["items"]] == [video_id]
        error = await ws.call("feed", before="not-an-id!")
        assert error["code"] == "invalid_params"


async def test_an_author_above_the_threshold_writes_nothing_per_follower(
    make_client: Any,
) -> None:
    app = await make_client(**FAST, feed_fanout_threshold=2)
    wide, narrow = await register(app, "wide"), await register(app, "narrow")
    fans = [await register(app, f"fan{i}") for i in range(3)]
    for fan in fans:
        await put(app, f"/v1/users/{wide['user_id']}/follow", fan)
    await put(app, f"/v1/users/{narrow['user_id']}/follow", fans[0])
    feeds = app.server.app[FEEDS]

    async with connected(app, fans[1]["access_token"]) as ws:
        await ws.result("subscribe", channel=f"user:{fans[1]['user_id']}")
        old = await create_video(app, narrow, "narrow, before")
        wide_video = await create_video(app, wide, "wide")
        push = await ws.next_push(op="feed")  # fans[1] follows only the wide author
        assert push["item_id"] == wide_video
    new = await create_video(app, narrow, "narrow, after")
    await settled(app)

    assert feeds.stats.wide_posts == 1
    assert feeds.stats.items_written == 2  # the narrow author's two posts, one follower each
    store = app.server.app[STORE]
    for fan in fans:  # no feed item of the wide author's video was written
        stored = await store.list_feed(fan["user_id"], limit=10, before=None)
        assert wide_video not in [item.video_id for item in stored]
    # Yet every follower sees it, merged in at read time and in time order.
    assert await feed_videos(app, fans[0]) == [new, wide_video, old]
    assert await feed_videos(app, fans[1]) == [wide_video]
    assert await feed_videos(app, fans[2]) == [wide_video]
    page = await get_json(app, "/v1/feed?limit=2", fans[0])
    rest = await get_json(app, f"/v1/feed?limit=2&before={page['next_before']}", fans[0])
    assert [i["item_id"] for i in rest["items"]] == [old]


async def test_unfollow_and_block_take_effect_for_later_videos(app: Any) -> None:
    author, quitter, blocked = [await register(app, n) for n in ("author", "quitter", "blockd")]
    author_id = author["user_id"]
    for fan in (quitter, blocked):
        await put(app, f"/v1/users/{author_id}/follow", fan)
    before = await create_video(app, author, "before")
    await settled(app)

    await delete(app, f"/v1/users/{author_id}/follow", quitter)
    assert (await put(app, f"/v1/users/{blocked['user_id']}/block", author))["changed"]
    after = await create_video(app, author, "after")
    await settled(app)

    assert await feed_videos(app, quitter) == [before]
    assert await feed_videos(app, blocked) == [before]
    assert (await put(app, f"/v1/users/{author_id}/follow", blocked, 403))["code"] == "blocked"
    # The blocker cannot follow the blocked one either until they unblock.
    assert (await put(app, f"/v1/users/{blocked['user_id']}/follow", author, 403))["code"] == (
        "blocked"
    )
    dm = "dm:" + ":".join(sorted((author_id, blocked["user_id"])))
    async with app.post(
        f"/v1/channels/{dm}/messages", json={"data": {"text": "hi"}}, headers=bearer(blocked)
    ) as response:
        assert response.status == 403
        assert (await response.json())["code"] == "blocked"
    async with app.post(
        f"/v1/channels/{dm}/messages", json={"data": {"text": "hi"}}, headers=bearer(author)
    ) as response:
        assert response.status == 201  # the blocker may still write

    await delete(app, f"/v1/users/{blocked['user_id']}/block", author)
    assert (await put(app, f"/v1/users/{author_id}/follow", blocked))["changed"]
    newest = await create_video(app, author, "newest")
    await settled(app)
    assert await feed_videos(app, blocked) == [newest, before]
    assert after not in await feed_videos(app, quitter)


async def test_a_rejected_or_held_video_never_reaches_a_feed(app: Any) -> None:
    author, fan = await register(app, "author"), await register(app, "fan")
    await put(app, f"/v1/users/{author['user_id']}/follow", fan)
    services = app.server.app[SERVICES]
    store = services.store
    ledger = StoreLedger(store, app.server.app[HUB], services.feeds)

    async def moderated(title: str, state: VideoState) -> str:
        video = await store.create_video(author["user_id"], title, status=VideoStatus.MODERATING)
        if state is not VideoState.MODERATING:
            change = Change(video.id, author["user_id"], VideoState.MODERATING, state)
            assert await ledger.record(change)
        return video.id

    async with connected(app, fan["access_token"]) as ws:
        await ws.result("subscribe", channel=f"user:{fan['user_id']}")
        await moderated("rejected", VideoState.REJECTED)
        await moderated("held", VideoState.MODERATING)
        await moderated("failed", VideoState.FAILED)
        passed = await moderated("passed", VideoState.READY)
        push = await ws.next_push(op="feed")
        assert push["item_id"] == passed  # the first and only feed push
    await settled(app)
    assert await feed_videos(app, fan) == [passed]
    assert services.feeds.stats.posts == 1

    # A video taken down after it was posted drops out of the feed.
    await store.set_video_status(passed, VideoStatus.REJECTED)
    assert await feed_videos(app, fan) == []


async def test_a_reshare_reaches_the_resharers_followers_and_counts_once(app: Any) -> None:
    author, sharer, fan = [await register(app, n) for n in ("author", "sharer", "fan")]
    await put(app, f"/v1/users/{sharer['user_id']}/follow", fan)
    video_id = await create_video(app, author)

    async with app.post(f"/v1/videos/{video_id}/reshares", headers=bearer(sharer)) as response:
        assert response.status == 201
        first = await response.json()
    assert (first["video_id"], first["duplicate"]) == (video_id, False)
    async with app.post(f"/v1/videos/{video_id}/reshares", headers=bearer(sharer)) as response:
        assert response.status == 200
        assert await response.json() == {"video_id": video_id, "item_id": None, "duplicate": True}
    async with app.post(f"/v1/videos/{video_id}/reshares", headers=bearer(author)) as response:
        assert response.status == 400  # one's own videos are posted when they are ready
    await settled(app)

    page = await get_json(app, "/v1/feed", fan)
    assert [(i["item_id"], i["by"]) for i in page["items"]] == [
        (first["item_id"], sharer["user_id"])
    ]

    async def counted() -> bool:
        video = await get_json(app, f"/v1/videos/{video_id}", fan)
        return bool(video["shares"] == 1)

    await eventually(counted)
    # Following the author too, the fan sees the video once (at its newest item).
    await put(app, f"/v1/users/{author['user_id']}/follow", fan)
    assert await feed_videos(app, fan) == [video_id]
