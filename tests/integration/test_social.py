"""Videos, likes, comments and shares over real sockets: REST and WebSocket, one node.

The two-node flood (50,000 likes through two processes on one Redis) is in test_flood.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.keys import SERVICES, STORE
from storage.videos import VideoStatus
from tests.support.clients import WsClient, bearer, register

FAST = {"video_ready_on_create": True, "video_cache_seconds": 0.0, "counts_push_window": 0.05}


@pytest.fixture
async def app(make_client: Any) -> Any:
    return await make_client(**FAST, counts_flush_interval=0.05)


async def create_video(client: Any, account: dict[str, Any], title: str = "My cat") -> str:
    async with client.post("/v1/videos", json={"title": title}, headers=bearer(account)) as r:
        body = await r.json()
        assert r.status == 201, body
        return str(body["video_id"])


async def get_json(client: Any, path: str, account: dict[str, Any], status: int = 200) -> Any:
    async with client.get(path, headers=bearer(account)) as response:
        body = await response.json()
        assert response.status == status, body
        return body


async def eventually(check: Any, timeout: float = 10.0) -> None:
    """Wait until ``check()`` (a coroutine function) returns true."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def test_a_video_is_created_read_and_cached_with_an_etag(app: Any) -> None:
    alice, bob = await register(app, "alice"), await register(app, "bob")
    video_id = await create_video(app, alice)

    async with app.get(f"/v1/videos/{video_id}", headers=bearer(bob)) as response:
        body = await response.json()
        etag = response.headers["ETag"]
        assert response.status == 200
        assert response.headers["Cache-Control"] == "public, max-age=0"
    assert body == {
        "video_id": video_id,
        "channel": f"video:{video_id}",
        "owner": alice["user_id"],
        "title": "My cat",
        "status": "ready",
        "created_at": body["created_at"],
        "likes": 0,
        "comments": 0,
        "shares": 0,
        "views": 0,
        "watch_seconds": 0,
        "version": 0,
    }
    headers = {**bearer(bob), "If-None-Match": f'"nope", W/{etag}'}
    async with app.get(f"/v1/videos/{video_id}", headers=headers) as response:
        assert response.status == 304
        assert response.headers["ETag"] == etag
        assert await response.read() == b""
    async with app.put(f"/v1/videos/{video_id}/like", headers=bearer(bob)) as response:
        assert response.status == 200
    # The like changed the live totals: the same validator no longer matches.
    async with app.get(
        f"/v1/videos/{video_id}", headers={**bearer(bob), "If-None-Match": etag}
    ) as r:
        assert r.status == 200
        assert (await r.json())["likes"] == 1
        assert r.headers["ETag"] != etag


async def test_videos_are_made_by_uploads_unless_the_dev_setting_is_on(client: Any) -> None:
    alice = await register(client, "alice")
    async with client.post("/v1/videos", json={"title": "x"}, headers=bearer(alice)) as r:
        assert r.status == 403
        assert (await r.json())["code"] == "forbidden"


async def test_only_the_owner_sees_a_video_that_is_not_ready(app: Any) -> None:
    alice, bob = await register(app, "alice"), await register(app, "bob")
    video = await app.app[STORE].create_video(alice["user_id"], "still processing")
    path = f"/v1/videos/{video.id}"

    async with app.get(path, headers=bearer(alice)) as response:
        assert response.status == 200
        assert (await response.json())["status"] == "uploading"
        assert response.headers["Cache-Control"] == "private, no-cache"
    assert (await get_json(app, path, bob, 404))["code"] == "not_found"
    async with app.put(path + "/like", headers=bearer(alice)) as response:
        assert response.status == 409
        assert (await response.json())["code"] == "video_not_ready"
    async with app.put(path + "/like", headers=bearer(bob)) as response:
        assert response.status == 404
    assert (await get_json(app, "/v1/videos/01ZZZZZZZZZZZZZZZZZZZZZZZZ", alice, 404))[
        "code"
    ] == "not_found"


async def test_like_and_unlike_are_idempotent_and_counted_once(app: Any) -> None:
    alice, bob, carol = [await register(app, n) for n in ("alice", "bob", "carol")]
    video_id = await create_video(app, alice)
    path = f"/v1/videos/{video_id}/like"
    answers = []
    for account, method in [(bob, "PUT"), (bob, "PUT"), (carol, "PUT"), (bob, "DELETE")]:
        async with app.request(method, path, headers=bearer(account)) as response:
            assert response.status == 200
            answers.append(await response.json())
    conn = await WsClient.connect(app, carol["access_token"])
    again = await conn.result("like", video_id=video_id)
    gone = await conn.result("unlike", video_id=video_id)
    twice = await conn.result("unlike", video_id=video_id)

    assert [(a["liked"], a["changed"]) for a in answers] == [
        (True, True),
        (True, False),
        (True, True),
        (False, True),
    ]
    assert (again["changed"], gone["changed"], twice["changed"]) == (False, True, False)
    assert (await get_json(app, path, bob)) == {"video_id": video_id, "liked": False}
    await conn.result("like", video_id=video_id)
    assert await conn.result("like_status", video_id=video_id) == {
        "video_id": video_id,
        "liked": True,
    }
    assert (await get_json(app, f"/v1/videos/{video_id}", alice))["likes"] == 1
    store = app.app[STORE]

    async def flushed() -> bool:
        video = await store.get_video(video_id)
        return bool(video.counts.likes == 1)

    await eventually(flushed)
    assert await store.count_likes(video_id) == 1


async def test_comments_are_stored_paged_cached_and_pushed(app: Any) -> None:
    alice, bob = await register(app, "alice"), await register(app, "bob")
    video_id = await create_video(app, alice)
    watcher = await WsClient.connect(app, alice["access_token"])
    await watcher.result("subscribe", channel=f"video:{video_id}")
    path = f"/v1/videos/{video_id}/comments"
    ids = []
    for n in range(5):
        body = {"text": f"comment {n}", "client_msg_id": f"c-{n}"}
        async with app.post(path, json=body, headers=bearer(bob)) as response:
            assert response.status == 201
            ids.append((await response.json())["comment_id"])
    async with app.post(
        path, json={"text": "comment 4", "client_msg_id": "c-4"}, headers=bearer(bob)
    ) as r:
        assert r.status == 200
        repeated = await r.json()

    assert (repeated["duplicate"], repeated["comment_id"]) == (True, ids[4])
    pushed = [await watcher.next_push(op="comment") for _ in range(5)]
    assert [p["comment_id"] for p in pushed] == ids
    assert pushed[0] == {
        "op": "comment",
        "channel": f"video:{video_id}",
        "comment_id": ids[0],
        "video_id": video_id,
        "author": bob["user_id"],
        "text": "comment 0",
        "ts": pushed[0]["ts"],
        "client_msg_id": "c-0",
    }
    first = await get_json(app, path + "?limit=2", alice)
    second = await get_json(app, f"{path}?limit=2&before={first['next_before']}", alice)
    third = await get_json(app, f"{path}?limit=2&before={second['next_before']}", alice)
    texts = [c["text"] for page in (first, second, third) for c in page["comments"]]
    assert texts == [f"comment {n}" for n in range(4, -1, -1)]
    assert third["next_before"] is None
    async with app.get(path + "?limit=2", headers=bearer(alice)) as response:
        etag = response.headers["ETag"]
        assert response.headers["Cache-Control"] == "public, max-age=0"
    async with app.get(path + "?limit=2", headers={**bearer(bob), "If-None-Match": etag}) as r:
        assert r.status == 304
    assert (await get_json(app, path + "?before=nope", alice, 400))["code"] == "invalid_params"
    async with app.post(path, json={"text": "   "}, headers=bearer(bob)) as response:
        assert response.status == 400

    async def counted() -> bool:
        return bool((await get_json(app, f"/v1/videos/{video_id}", alice))["comments"] == 5)

    await eventually(counted)


async def test_a_comment_is_deleted_by_its_author_or_the_videos_owner_only(app: Any) -> None:
    alice, bob, carol = [await register(app, n) for n in ("alice", "bob", "carol")]
    video_id = await create_video(app, alice)
    conn_bob = await WsClient.connect(app, bob["access_token"])
    conn_carol = await WsClient.connect(app, carol["access_token"])
    await conn_carol.result("subscribe", channel=f"video:{video_id}")
    by_bob = [
        (await conn_bob.result("comment", video_id=video_id, text=t))["comment_id"] for t in "ab"
    ]

    refused = await conn_carol.call("delete_comment", video_id=video_id, comment_id=by_bob[0])
    assert (refused["op"], refused["code"]) == ("error", "forbidden")
    own = await conn_bob.result("delete_comment", video_id=video_id, comment_id=by_bob[0])
    assert own == {"video_id": video_id, "comment_id": by_bob[0], "deleted": True}
    again = await conn_bob.call("delete_comment", video_id=video_id, comment_id=by_bob[0])
    assert again["code"] == "not_found"
    path = f"/v1/videos/{video_id}/comments/{by_bob[1]}"
    async with app.delete(path, headers=bearer(alice)) as response:  # the video's owner
        assert response.status == 200

    pushes = [await conn_carol.next_push(op="comment_deleted") for _ in range(2)]
    assert [p["comment_id"] for p in pushes] == by_bob
    assert (await conn_bob.result("comments", video_id=video_id))["comments"] == []

    async def counted() -> bool:
        return bool((await get_json(app, f"/v1/videos/{video_id}", alice))["comments"] == 0)

    await eventually(counted)


async def test_counts_pushes_carry_absolute_totals_coalesced(make_client: Any) -> None:
    app = await make_client(**{**FAST, "counts_push_window": 0.3})
    owner = await register(app, "owner")
    video_id = await create_video(app, owner)
    watcher = await WsClient.connect(app, owner["access_token"])
    await watcher.result("subscribe", channel=f"video:{video_id}")
    services = app.app[SERVICES]
    store = app.app[STORE]
    users = [f"fan{i}" for i in range(300)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    for user in users:
        assert await store.set_like(video_id, user, True)
        await services.hot_counts.add(video_id, likes=1)
        await asyncio.sleep(0.002)
    elapsed = loop.time() - started
    pushes: list[dict[str, Any]] = []
    while not pushes or pushes[-1]["likes"] < len(users):
        pushes.append(await watcher.next_push(op="counts"))

    # One push for the subscription's audience change may come first, then at most one per
    # window while the likes arrive.
    assert len(pushes) <= elapsed / 0.3 + 3, (len(pushes), elapsed)
    assert pushes[-1] == {
        "op": "counts",
        "channel": f"video:{video_id}",
        "video_id": video_id,
        "likes": len(users),
        "comments": 0,
        "shares": 0,
        "views": 0,
        "watch_seconds": 0,
        "viewers": 1,
        "version": len(users),
    }
    assert [p["version"] for p in pushes] == sorted(p["version"] for p in pushes)


async def test_a_share_is_a_dm_message_carrying_the_video_and_is_counted(app: Any) -> None:
    alice, bob = await register(app, "alice"), await register(app, "bob")
    video_id = await create_video(app, alice, "Dance")
    channel = "dm:" + ":".join(sorted([alice["user_id"], bob["user_id"]]))
    conn_bob = await WsClient.connect(app, bob["access_token"])
    await conn_bob.result("subscribe", channel=channel)
    body = {"channel": channel, "text": "look", "client_msg_id": "s-1"}

    async with app.post(f"/v1/videos/{video_id}/shares", json=body, headers=bearer(alice)) as r:
        assert r.status == 201
        shared = await r.json()
    async with app.post(f"/v1/videos/{video_id}/shares", json=body, headers=bearer(alice)) as r:
        assert r.status == 200
        assert (await r.json())["duplicate"]
    event = await conn_bob.next_event()

    assert (shared["channel"], shared["offset"], shared["video_id"]) == (channel, 1, video_id)
    assert event["message_id"] == shared["message_id"]
    assert event["data"] == {
        "type": "video_share",
        "video": {"video_id": video_id, "title": "Dance", "owner": alice["user_id"]},
        "text": "look",
    }
    history = await conn_bob.result("history", channel=channel)
    assert history["messages"][0]["data"]["video"]["video_id"] == video_id
    room = await conn_bob.call("share", video_id=video_id, channel="room:lobby")
    assert room["code"] == "invalid_params"
    other = "dm:" + ":".join(sorted([alice["user_id"], "someone"]))
    stranger = await conn_bob.call("share", video_id=video_id, channel=other)
    assert stranger["code"] == "forbidden"
    await conn_bob.result("share", video_id=video_id, channel=channel)

    async def counted() -> bool:
        return bool((await get_json(app, f"/v1/videos/{video_id}", bob))["shares"] == 2)

    await eventually(counted)
    stored = await app.app[STORE].get_video(video_id)
    assert stored.status is VideoStatus.READY
