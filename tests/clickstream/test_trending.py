"""The clickstream put to use, over two gateway processes on one Redis (and a Redis Cluster):
a scripted stream of views, watch time and shares from two countries makes the expected
trending order, overall and per country, and reaches each video's totals and ``counts``
pushes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.support.clients import WsClient, bearer, register
from tests.support.servers import SharedRedis, node_env, running_nodes

TIMEOUT = 30.0


def item(kind: str, event_id: str, **fields: object) -> dict[str, Any]:
    return {"type": kind, "event_id": event_id, "client_ts": int(time.time() * 1000), **fields}


async def until(probe: Any, expected: Any, what: str) -> None:
    """Ask ``probe`` until it answers ``expected`` (views are summed for a second, answers
    cached for two), failing with the last answer."""
    last = None
    try:
        async with asyncio.timeout(TIMEOUT):
            while (last := await probe()) != expected:
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"{what}: still {last!r}, expected {expected!r}") from None


async def test_a_scripted_stream_makes_the_trending_order_and_the_totals(
    shared_redis: SharedRedis, tmp_path: Path
) -> None:
    env = node_env(
        shared_redis,
        tmp_path,
        MOOSIC_VIDEO_READY_ON_CREATE="1",
        MOOSIC_TRUSTED_PROXIES="127.0.0.0/8",  # the country comes from CloudFront's header
        MOOSIC_ALLOWED_COUNTRIES="KH,AU",
        MOOSIC_COUNTS_PUSH_WINDOW="0.1",
    )
    with running_nodes(env, tmp_path) as (a, b):
        async with aiohttp.ClientSession() as http:
            maker = await register(http, "maker", a.base_url)
            viewer = await register(http, "viewer", a.base_url)
            ids = []
            for title in ("one", "two", "three"):
                async with http.post(
                    f"{a.base_url}/v1/videos", json={"title": title}, headers=bearer(maker)
                ) as response:
                    assert response.status == 201
                    ids.append((await response.json())["video_id"])
            v1, v2, v3 = ids
            watcher = await WsClient.connect(http, viewer["access_token"], f"{b.base_url}/ws")
            await watcher.result("subscribe", channel=f"video:{v1}")

            # Cambodia, on node A over REST: v1 watched five times (30 s in all), v2 twice and
            # shared once. Australia, on node B over the WebSocket: v3 three times, and an id
            # no video has fifty times (a client may name anything).
            kh = {**bearer(viewer), "CloudFront-Viewer-Country": "KH"}
            batch = [item("view_start", f"a{n}", video_id=v1) for n in range(5)]
            batch += [item("watch_progress", "a-w", video_id=v1, seconds_watched=20.0)]
            batch += [item("view_end", "a-e", video_id=v1, seconds_watched=10.0)]
            batch += [item("view_start", f"b{n}", video_id=v2) for n in range(2)]
            batch += [item("share", "b-s", video_id=v2, target="external")]
            async with http.post(
                f"{a.base_url}/v1/events", json={"events": batch}, headers=kh
            ) as response:
                assert (await response.json())["accepted"] == len(batch)
            async with http.post(  # the same events again: duplicates, counted once
                f"{a.base_url}/v1/events", json={"events": batch}, headers=kh
            ) as response:
                assert (await response.json())["duplicates"] == len(batch)
            au = await http.ws_connect(
                f"{b.base_url}/ws",
                headers={**bearer(viewer), "CloudFront-Viewer-Country": "AU"},
            )
            events = [item("view_start", f"c{n}", video_id=v3) for n in range(3)]
            events += [item("view_start", f"g{n}", video_id="ghost") for n in range(50)]
            await au.send_str(orjson.dumps({"op": "track", "id": 1, "events": events}).decode())
            reply = orjson.loads(await au.receive_str(timeout=TIMEOUT))
            assert reply["result"]["accepted"] == len(events)

            async def trending(query: str = "", node: Any = a) -> list[tuple[str, float]]:
                async with http.get(
                    f"{node.base_url}/v1/trending{query}", headers=bearer(viewer)
                ) as response:
                    assert response.status == 200
                    body = await response.json()
                return [(v["video_id"], v["score"]) for v in body["videos"]]

            # v2: 2 views + a share = 10; v1: 5 views + 30 s watched = 8; v3: 3. No ghost.
            await until(trending, [(v2, 10.0), (v1, 8.0), (v3, 3.0)], "everyone's trending")
            await until(lambda: trending("?country=KH", b), [(v2, 10.0), (v1, 8.0)], "KH")
            await until(lambda: trending("?country=AU&limit=1"), [(v3, 3.0)], "AU")
            await until(lambda: trending("?country=US"), [], "US")
            async with http.get(
                f"{a.base_url}/v1/trending?country=kh", headers=bearer(viewer)
            ) as response:
                assert response.status == 400
                assert (await response.json())["code"] == "invalid_params"
            async with http.get(f"{a.base_url}/v1/trending") as response:
                assert response.status == 401

            async def totals() -> tuple[int, int]:
                async with http.get(f"{b.base_url}/v1/videos/{v1}", headers=bearer(viewer)) as r:
                    body = await r.json()
                return body["views"], body["watch_seconds"]

            await until(totals, (5, 30), "v1's views and watch time")
            async with asyncio.timeout(TIMEOUT):
                while (push := await watcher.next_push(op="counts"))["views"] < 5:
                    pass
            assert (push["views"], push["watch_seconds"], push["likes"]) == (5, 30, 0)
            await au.close()
            await watcher.close()
            async with http.get(f"{a.base_url}/metrics") as response:
                text = await response.text()
            frozen = next(line for line in text.splitlines() if line.startswith("moosic_gc_frozen"))
            assert int(float(frozen.split()[1])) > 10_000  # start-up objects left out of GC passes
