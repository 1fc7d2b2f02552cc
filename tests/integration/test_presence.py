"""Presence, join/leave and typing pushes, on one node (in-process) and across nodes (Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.test_ws import token_for
from tests.support.clients import WsClient
from tests.support.servers import GatewayNode, SharedRedis, node_env, running_nodes


async def test_watch_presence_reports_status_and_changes(client: Any) -> None:
    watcher = await WsClient.connect(client, token_for("watcher"))
    first = await watcher.result("watch_presence", users=["sokha", "dara"])
    assert first == {
        "users": {
            "sokha": {"online": False, "last_seen": None},
            "dara": {"online": False, "last_seen": None},
        }
    }
    sokha = await WsClient.connect(client, token_for("sokha"))
    push = await watcher.next_push(op="presence")
    assert push == {"op": "presence", "user": "sokha", "online": True, "last_seen": None}
    second_phone = await WsClient.connect(client, token_for("sokha"))
    await sokha.close()  # still online on the second phone: no push
    await second_phone.close()
    gone = await watcher.next_push(op="presence")
    assert (gone["user"], gone["online"]) == ("sokha", False)
    assert isinstance(gone["last_seen"], int)
    again = await watcher.result("watch_presence", users=["sokha"])
    assert again["users"]["sokha"] == {"online": False, "last_seen": gone["last_seen"]}
    assert (await watcher.result("unwatch_presence", users=["sokha", "nobody"])) == {
        "unwatched": ["sokha"]
    }
    await WsClient.connect(client, token_for("sokha"))
    with pytest.raises(TimeoutError):
        await watcher.next_push(timeout=0.3, op="presence")


async def test_watch_cap(make_client: Any) -> None:
    client = await make_client(max_watched_users=3)
    watcher = await WsClient.connect(client, token_for("watcher"))
    await watcher.result("watch_presence", users=["a", "b"])
    frame = await watcher.call("watch_presence", users=["b", "c", "d"])
    assert frame["code"] == "too_many_subscriptions"
    await watcher.result("watch_presence", users=["c"])
    bad = await watcher.call("watch_presence", users=["has:colon"])
    assert bad["code"] == "invalid_params"


async def test_channel_presence_join_leave_and_viewers(client: Any) -> None:
    dm = "dm:ann:bo"
    ann = await WsClient.connect(client, token_for("ann"))
    await ann.result("subscribe", channel=dm)
    bo = await WsClient.connect(client, token_for("bo"))
    await bo.result("subscribe", channel=dm)
    # Everyone in the channel sees joins, the joiner included.
    assert await ann.next_push(op="join") == {"op": "join", "channel": dm, "user": "ann"}
    assert await ann.next_push(op="join") == {"op": "join", "channel": dm, "user": "bo"}
    here = await ann.result("presence", channel=dm)
    assert (here["users"], here["count"]) == (["ann", "bo"], 2)
    await bo.result("unsubscribe", channel=dm)
    assert await ann.next_push(op="leave") == {"op": "leave", "channel": dm, "user": "bo"}
    outsider = await WsClient.connect(client, token_for("cy"))
    assert (await outsider.call("presence", channel=dm))["code"] == "forbidden"
    for name in ("v1", "v2", "v3"):
        viewer = await WsClient.connect(client, token_for(name))
        await viewer.result("subscribe", channel="video:clip")
    assert await outsider.result("presence", channel="video:clip") == {
        "channel": "video:clip",
        "viewers": 3,
    }


async def test_typing_is_pushed_and_throttled(client: Any) -> None:
    dm = "dm:ann:bo"
    ann = await WsClient.connect(client, token_for("ann"))
    bo = await WsClient.connect(client, token_for("bo"))
    await bo.result("subscribe", channel=dm)
    assert await ann.result("typing", channel=dm) == {"channel": dm, "sent": True}
    assert await ann.result("typing", channel=dm) == {"channel": dm, "sent": False}
    assert await bo.next_push(op="typing") == {"op": "typing", "channel": dm, "user": "ann"}
    assert (await ann.call("typing", channel="video:v"))["code"] == "invalid_params"
    assert (await ann.call("typing", channel="dm:bo:cy"))["code"] == "forbidden"


# -- across nodes -------------------------------------------------------------------------


@pytest.fixture
def nodes(shared_redis: SharedRedis, tmp_path: Path) -> Iterator[list[GatewayNode]]:
    with running_nodes(
        node_env(shared_redis, tmp_path, MOOSIC_PRESENCE_TTL="3"), tmp_path
    ) as started:
        yield started


async def connect(http: aiohttp.ClientSession, node: GatewayNode, user: str) -> WsClient:
    return await WsClient.connect(http, token_for(user), url=node.base_url + "/ws")


async def test_presence_across_nodes_and_no_ghosts_after_a_crash(
    nodes: list[GatewayNode], http: aiohttp.ClientSession
) -> None:
    import signal

    a, b = nodes
    watcher = await connect(http, a, "watcher")
    assert (await watcher.result("watch_presence", users=["mia"]))["users"]["mia"][
        "online"
    ] is False
    mia_b = await connect(http, b, "mia")
    assert (await watcher.next_push(op="presence"))["online"] is True
    mia_a = await connect(http, a, "mia")  # a second node: still one "online"
    await mia_a.close()
    with pytest.raises(TimeoutError):
        await watcher.next_push(timeout=0.5, op="presence")
    dm = "dm:mia:zed"
    zed = await connect(http, a, "zed")
    await zed.result("subscribe", channel=dm)
    await mia_b.result("subscribe", channel=dm)
    assert await zed.next_push(op="join") == {"op": "join", "channel": dm, "user": "zed"}
    assert await zed.next_push(op="join") == {"op": "join", "channel": dm, "user": "mia"}
    assert (await zed.result("presence", channel=dm))["users"] == ["mia", "zed"]
    # Node B dies without a word: mia must not stay online (or in the DM) as a ghost.
    assert b.process is not None
    b.process.send_signal(signal.SIGKILL)
    b.process.wait(timeout=10)
    gone = await watcher.next_push(timeout=30, op="presence")
    assert (gone["user"], gone["online"]) == ("mia", False)
    assert await zed.next_push(timeout=30, op="leave") == {
        "op": "leave",
        "channel": dm,
        "user": "mia",
    }
    assert (await zed.result("presence", channel=dm))["users"] == ["zed"]
    await asyncio.sleep(0)
