"""Fault tests over real processes: a node killed, Redis restarted, a reconnect storm, SIGTERM.

Each test runs two gateway processes on one Redis and one SQLite file, moves real traffic, and
checks the guarantee of docs/reliability.md: every acknowledged message reaches every subscriber
exactly once, in order, whatever happened in between. All traffic stays on loopback and every
test is bounded in time.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp

from tests.integration.test_slow_consumer import metric
from tests.integration.test_ws import token_for
from tests.support.clients import WsClient
from tests.support.resilient import Publisher, Subscriber
from tests.support.servers import GatewayNode, RedisServer, node_env

CHANNEL = "room:flow"


async def wait_for(condition: object, timeout: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # type: ignore[operator]
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def subscribers_on(
    http: aiohttp.ClientSession, urls: list[str], count: int, *, start: int
) -> list[Subscriber]:
    subs = [
        Subscriber(http, token_for(f"s{i}"), CHANNEL, urls, node=(start + i) % len(urls)).start()
        for i in range(count)
    ]
    RUNNING.extend(subs)
    for sub in subs:
        await asyncio.wait_for(sub.subscribed.wait(), 20)
    return subs


RUNNING: list[Subscriber] = []


async def finish_all() -> None:
    """Stop every subscriber a test started, whatever happened to the test."""
    while RUNNING:
        await RUNNING.pop().finish()


def check_exactly_once(subs: list[Subscriber], publisher: Publisher) -> None:
    acked = sorted(publisher.acked.values())
    assert acked == list(range(1, len(acked) + 1)), "offsets were not gap-free"
    for sub in subs:
        assert not sub.problems, sub.problems
        # Everything from the first offset on, each exactly once and in order.
        assert sub.offsets == list(range(1, acked[-1] + 1))


async def test_kill_9_a_node_and_its_clients_recover_on_the_other(
    redis_server: RedisServer, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    env = node_env(redis_server, tmp_path, MOOSIC_SHUTDOWN_TIMEOUT="10")
    a = GatewayNode(env, tmp_path / "a.log").start()
    b = GatewayNode(env, tmp_path / "b.log").start()
    try:
        subs = await subscribers_on(http, [b.base_url, a.base_url], 10, start=0)
        publisher = Publisher(http, token_for("pub"), CHANNEL, [a.base_url])
        flow = asyncio.create_task(publisher.run(300, interval=0.01))
        await wait_for(lambda: len(publisher.acked) >= 100, 30, "100 acknowledged messages")
        assert b.process is not None
        b.process.send_signal(signal.SIGKILL)
        b.process.wait(timeout=10)
        await asyncio.wait_for(flow, 60)
        last = max(publisher.acked.values())
        await wait_for(
            lambda: all(s.last >= last for s in subs), 30, "every subscriber to catch up"
        )
        for sub in subs:
            await sub.finish()
        check_exactly_once(subs, publisher)
        assert sum(s.reconnects for s in subs) >= 5  # the half on node B moved
    finally:
        await finish_all()
        a.stop()
        b.stop()


async def test_redis_restart_loses_no_acknowledged_message(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    env = node_env(redis, tmp_path, MOOSIC_SHUTDOWN_TIMEOUT="10")
    a = GatewayNode(env, tmp_path / "a.log").start()
    b = GatewayNode(env, tmp_path / "b.log").start()
    try:
        subs = await subscribers_on(http, [a.base_url, b.base_url], 8, start=0)
        publisher = Publisher(http, token_for("pub"), CHANNEL, [a.base_url])
        flow = asyncio.create_task(publisher.run(250, interval=0.01))
        await wait_for(lambda: len(publisher.acked) >= 60, 30, "60 acknowledged messages")
        redis.stop()
        await asyncio.sleep(1.0)  # messages keep being stored and acknowledged meanwhile
        redis.start()
        await asyncio.wait_for(flow, 60)
        last = max(publisher.acked.values())
        await wait_for(
            lambda: all(s.last >= last for s in subs), 30, "every subscriber to catch up"
        )
        for sub in subs:
            await sub.finish()
        check_exactly_once(subs, publisher)
        for node in (a, b):
            async with aiohttp.ClientSession(base_url=node.base_url) as client:
                # A node whose own clients never needed Redis may reconnect a little later
                # (jittered backoff): wait for it rather than race it.
                async with asyncio.timeout(30):
                    while await metric(client, "moosic_broker_reconnects_total") < 1:
                        await asyncio.sleep(0.1)
                assert await metric(client, "moosic_gap_events_skipped_total") == 0
    finally:
        await finish_all()
        a.stop()
        b.stop()
        redis.stop()


async def test_reconnect_storm_recovers_everyone_from_the_window(
    redis_server: RedisServer, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    clients = 1000
    channels = 10
    env = node_env(redis_server, tmp_path, MOOSIC_SHUTDOWN_TIMEOUT="10")
    a = GatewayNode(env, tmp_path / "a.log").start()
    b = GatewayNode(env, tmp_path / "b.log").start()
    urls = [a.base_url, b.base_url]
    try:
        talker = await WsClient.connect(http, token_for("talker"), url=a.base_url + "/ws")
        for c in range(channels):  # every channel has history before the storm
            await talker.result("publish", channel=f"room:storm{c}", data={"n": -1})
        subs = [
            Subscriber(http, token_for(f"u{i}"), f"room:storm{i % channels}", urls, node=i % 2)
            for i in range(clients)
        ]
        RUNNING.extend(subs)
        for group in range(0, clients, 100):
            for sub in subs[group : group + 100]:
                sub.start()
            await asyncio.gather(*(s.subscribed.wait() for s in subs[group : group + 100]))

        async def store_reads() -> float:
            total = 0.0
            for url in urls:
                async with aiohttp.ClientSession(base_url=url) as client:
                    total += await metric(client, "moosic_recoveries_from_store_total")
            return total

        before = await store_reads()
        # Everyone drops at once; messages keep coming while they are away.
        for sub in subs:
            await sub.finish()
        for n in range(5):
            for c in range(channels):
                await talker.result("publish", channel=f"room:storm{c}", data={"n": n})
        for sub in subs:
            sub.node = (sub.node + 1) % 2
            sub.start()
        await asyncio.wait_for(asyncio.gather(*(s.subscribed.wait() for s in subs)), 60)
        await wait_for(lambda: all(s.last == 6 for s in subs), 30, "every client to recover")
        for sub in subs:
            await sub.finish()
            assert not sub.problems, sub.problems
            assert sub.offsets == [2, 3, 4, 5, 6]  # 1 was before it joined; 2-6 while away
        # The storm was served from the recent window: not one store read for it.
        assert await store_reads() == before
    finally:
        await finish_all()
        a.stop()
        b.stop()


async def test_sigterm_drains_without_losing_a_message(
    redis_server: RedisServer, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    env = node_env(redis_server, tmp_path, MOOSIC_SHUTDOWN_TIMEOUT="10")
    a = GatewayNode(env, tmp_path / "a.log").start()
    b = GatewayNode(env, tmp_path / "b.log").start()
    try:
        subs = await subscribers_on(http, [b.base_url, a.base_url], 10, start=0)
        # The publisher is on the node that goes away: its in-flight publish must be answered
        # (or retried without a duplicate) and it must carry on from the other node.
        publisher = Publisher(http, token_for("pub"), CHANNEL, [b.base_url, a.base_url])
        flow = asyncio.create_task(publisher.run(300, interval=0.01))
        await wait_for(lambda: len(publisher.acked) >= 100, 30, "100 acknowledged messages")
        b.stop(signal.SIGTERM)  # waits for the process to exit
        await asyncio.wait_for(flow, 60)
        last = max(publisher.acked.values())
        await wait_for(
            lambda: all(s.last >= last for s in subs), 30, "every subscriber to catch up"
        )
        for sub in subs:
            await sub.finish()
        check_exactly_once(subs, publisher)
        moved = [s for s in subs if s.close_codes]
        assert len(moved) >= 5
        assert all(code == 4000 for s in moved for code in s.close_codes)
        async with aiohttp.ClientSession(base_url=a.base_url) as client:
            assert await metric(client, "moosic_ws_connections") == 0  # all finished on A
    finally:
        await finish_all()
        a.stop()
        b.stop()
