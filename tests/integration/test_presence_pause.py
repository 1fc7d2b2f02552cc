"""A gateway node paused for longer than the presence ttl (issue 21, item 2).

A SIGSTOP stands for a long GC pause or a stalled VM. While node A is stopped, node B rightly
clears what A had registered. When A resumes it must register its users again, and what A's
sockets do afterwards must only ever take back what A itself added: a user connected on B is
never reported offline because a socket on A closed.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from storage.redis.client import RedisClient
from storage.redis.presence import _REAP, RedisPresence
from tests.integration.test_ws import token_for
from tests.support.clients import WsClient
from tests.support.servers import GatewayNode, RedisServer, node_env, running_nodes

TTL = 3.0  # the smallest MOOSIC_PRESENCE_TTL (gateway/settings.py)
ROOM = "room:pause"
ON_A = ["a0", "a1", "a2", "a3"]
ON_B = ["b0", "b1", "b2", "b3"]
ALSO_ON_A = ["b0", "b1"]  # a second connection on A: their A sockets go away, B's stay
EVERYONE = ON_A + ON_B
SETTLE_TIMEOUT = 60.0
SAMPLES = 8


@pytest.fixture
def nodes(redis_server: RedisServer, tmp_path: Path) -> Iterator[list[GatewayNode]]:
    env = node_env(
        redis_server,
        tmp_path,
        MOOSIC_PRESENCE_TTL=str(int(TTL)),
        # The observers poll: their status reads must not be rate limited.
        MOOSIC_RATE_LIMITS="publish=off,watch_presence=off",
    )
    with running_nodes(env, tmp_path) as started:
        yield started


async def connect(
    http: aiohttp.ClientSession, node: GatewayNode, user: str, *, member: bool = True
) -> WsClient:
    conn = await WsClient.connect(http, token_for(user), url=node.base_url + "/ws")
    if member:
        await conn.result("subscribe", channel=ROOM)
    await conn.result("watch_presence", users=EVERYONE)
    return conn


async def view(conn: WsClient) -> tuple[list[str], int, set[str]]:
    """The room's users and count, and who is online, as the connection's node answers."""
    here = await conn.result("presence", channel=ROOM)
    statuses = (await conn.result("watch_presence", users=EVERYONE))["users"]
    online = {user for user, status in statuses.items() if status["online"]}
    return here["users"], here["count"], online


async def settle(asking: list[WsClient], expected: list[str]) -> float:
    """Poll every asking connection until each node reports exactly ``expected``."""
    want = (sorted(expected), len(expected), set(expected))
    started = time.monotonic()
    last: list[tuple[list[str], int, set[str]]] = []
    while time.monotonic() - started < SETTLE_TIMEOUT:
        last = [await view(conn) for conn in asking]
        if all(seen == want for seen in last):
            return time.monotonic() - started
        await asyncio.sleep(0.25)
    raise AssertionError(f"presence never settled on {want}; last seen {last}")


async def stays(asking: list[WsClient], expected: list[str]) -> None:
    """Sample over several ttls: every node keeps reporting exactly ``expected``."""
    want = (sorted(expected), len(expected), set(expected))
    for _ in range(SAMPLES):
        await asyncio.sleep(TTL / 2)
        for conn in asking:
            assert await view(conn) == want


async def test_a_paused_node_registers_again_and_never_outvotes_a_live_one(
    nodes: list[GatewayNode], http: aiohttp.ClientSession
) -> None:
    a, b = nodes
    assert a.process is not None
    on_a = {user: await connect(http, a, user) for user in ON_A}
    on_b = {user: await connect(http, b, user) for user in ON_B}
    dual = {user: await connect(http, a, user) for user in ALSO_ON_A}
    # Observers (not in the room, not among EVERYONE) ask each node.
    asking = [
        await connect(http, a, "observer-a", member=False),
        await connect(http, b, "observer-b", member=False),
    ]
    await settle(asking, EVERYONE)

    a.process.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(3 * TTL)
        # B cleared A's registrations: only B's users are left (A is stopped, so ask B).
        await settle(asking[1:], ON_B)
    finally:
        a.process.send_signal(signal.SIGCONT)
    resumed = time.monotonic()

    recovered = await settle(asking, EVERYONE)
    print(f"\npresence whole again {recovered:.2f} s after SIGCONT")  # noqa: T201
    await stays(asking, EVERYONE)

    # Everyone still receives the room's events, on both nodes.
    publisher = on_b["b3"]
    await publisher.result("publish", channel=ROOM, data={"after": "pause"})
    for conn in [*on_a.values(), *on_b.values(), *dual.values()]:
        assert (await conn.next_event())["data"] == {"after": "pause"}

    # A's users really leave, and B's users' sockets on A close too: B's users stay online.
    for conn in [*on_a.values(), *dual.values()]:
        await conn.close()
    await settle(asking, ON_B)
    await stays(asking, ON_B)
    print(f"A's users gone; checked {time.monotonic() - resumed:.1f} s after SIGCONT")  # noqa: T201


# -- the scripts, against a real redis-server ------------------------------------------------

ScriptNodes = tuple[str, list[RedisClient], tuple[RedisPresence, RedisPresence]]


@pytest.fixture
async def pair(redis_server: RedisServer) -> AsyncIterator[ScriptNodes]:
    """Two nodes' presence on one fresh key prefix: (prefix, their Redis clients, presence)."""
    prefix = f"s{time.monotonic_ns()}:"
    brokers = [RedisClient(redis_server.url) for _ in "ab"]
    a, b = (RedisPresence(broker, prefix=prefix, ttl=TTL) for broker in brokers)
    try:
        yield prefix, brokers, (a, b)
    finally:
        for broker in brokers:
            await broker.close()


async def test_a_reaped_node_can_only_take_back_what_it_still_holds(
    pair: ScriptNodes,
) -> None:
    prefix, brokers, (a, b) = pair
    nodes = (prefix + "p:nodes").encode()
    node_a = brokers[0].node_id
    assert (await a.sweep()).registered is False  # first heartbeat: a new node
    assert (await b.sweep()).registered is False
    assert await a.user_up("x") is True
    assert await b.user_up("x") is False  # online on two nodes
    assert await a.channel_up("room:r", "x") is True
    assert await b.channel_up("room:r", "x") is False
    assert await a.user_up("x") is False  # a repeated add changes nothing
    assert await a.channel_up("room:r", "x") is False

    # A stops refreshing; B notices its expired entry and clears what A held.
    await brokers[0].call(b"ZADD", nodes, b"1", node_a)
    beat = await b.sweep()
    assert (beat.offline, beat.left) == ([], [])  # x is still on B
    assert await b.here("room:r", 10) == (["x"], 1)

    # A resumes: its stale removals change nothing, its adds wait for registration.
    assert await a.user_down("x", 1) is False
    assert await a.channel_down("room:r", "x") is False
    assert (await a.statuses(["x"]))["x"].online is True
    assert await b.here("room:r", 10) == (["x"], 1)
    assert await a.user_up("y") is False
    assert (await a.statuses(["y"]))["y"].online is False
    assert await a.recorded() == (set(), set())
    again = await a.sweep()
    assert (again.registered, again.users, again.pairs) == (False, 0, 0)
    assert await a.add_users(["x", "y"]) == ["y"]
    assert await a.add_pairs([("room:r", "x")]) == []
    assert await b.here("room:r", 10) == (["x"], 1)

    # Removing twice counts once: B's x stays online while A takes its own x back.
    assert await a.remove_users(["x", "x"], 5) == []
    assert await a.remove_pairs([("room:r", "x")]) == []
    assert (await b.statuses(["x"]))["x"].online is True
    assert await b.here("room:r", 10) == (["x"], 1)
    assert await b.user_down("x", 7) is True
    assert await b.user_down("x", 8) is False
    assert await b.channel_down("room:r", "x") is True
    assert await b.channel_down("room:r", "x") is False
    status = (await a.statuses(["x"]))["x"]
    assert (status.online, status.last_seen) == (False, 7)
    assert await a.here("room:r", 10) == ([], 0)


async def test_the_reaper_reads_the_score_again_inside_its_script(
    pair: ScriptNodes,
) -> None:
    prefix, brokers, (a, b) = pair
    nodes = (prefix + "p:nodes").encode()
    await a.sweep()
    await b.sweep()
    assert await a.user_up("z") is True
    # B saw A as expired a moment ago, but A refreshed since: the reap is refused.
    args = [(prefix + "p:").encode(), brokers[0].node_id]
    assert await brokers[1].script(_REAP, [nodes], args) is None
    assert (await b.statuses(["z"]))["z"].online is True
    assert await a.recorded() == ({"z"}, set())
    # Once A's score really passed, the same call clears it.
    await brokers[0].call(b"ZADD", nodes, b"1", brokers[0].node_id)
    assert await brokers[1].script(_REAP, [nodes], args) == [[b"z"], []]
    assert (await b.statuses(["z"]))["z"].online is False
