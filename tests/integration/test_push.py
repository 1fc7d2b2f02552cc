"""Push notifications of DM and group messages, against the real app (SQLite, file sink).

Notifications are read back from the JSON-lines files of the file sink, as a provider would
get them. The two-node tests are in ``test_push_nodes.py``; SNS through moto in
``test_push_sns.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestClient

from gateway.keys import SERVICES, STORE
from tests.support.clients import TIMEOUT, WsClient, bearer, register


def dm(a: dict[str, Any], b: dict[str, Any]) -> str:
    return "dm:" + ":".join(sorted([a["user_id"], b["user_id"]]))


def sent(folder: Path) -> list[dict[str, Any]]:
    """Every device send the file sink wrote, in the order written."""
    lines: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl")):
        lines.extend(orjson.loads(line) for line in path.read_bytes().splitlines())
    return sorted(lines, key=lambda line: line["ts"])


async def wait_sent(folder: Path, count: int) -> list[dict[str, Any]]:
    """Wait until at least ``count`` sends were written; return them all."""
    async with asyncio.timeout(TIMEOUT):
        while len(found := sent(folder)) < count:
            await asyncio.sleep(0.02)
    return found


async def say(client: Any, account: dict[str, Any], channel: str, text: str) -> None:
    async with client.post(
        f"/v1/channels/{channel}/messages", json={"data": {"text": text}}, headers=bearer(account)
    ) as r:
        assert r.status == 201, await r.json()


async def device(client: Any, account: dict[str, Any], token: str = "t" * 64) -> str:
    async with client.post(
        "/v1/devices",
        json={"platform": "apns", "token": token, "app_version": "1.0", "locale": "en"},
        headers=bearer(account),
    ) as r:
        assert r.status == 201
        return str((await r.json())["device_id"])


async def until_none_pending(client: TestClient[Any, Any], account: dict[str, Any]) -> None:
    """Wait until the user has no notification in the outbox (sent ones are completed after
    their last device send is written)."""
    async with asyncio.timeout(TIMEOUT):
        while await client.app[STORE].pending_notifications(account["user_id"]):
            await asyncio.sleep(0.02)


async def idle(client: TestClient[Any, Any]) -> None:
    """Wait until the node decided every message it took."""
    notifier = client.app[SERVICES].notifier
    assert notifier is not None
    assert await notifier.wait_idle(TIMEOUT)  # type: ignore[attr-defined]


async def test_an_offline_member_gets_one_notification_for_several_messages(
    make_client: Callable[..., Any], tmp_path: Path
) -> None:
    client = await make_client(push_delay=1.5, push_poll=0.05)
    folder = tmp_path / "push"
    ann, bob = await register(client, "ann"), await register(client, "bob")
    bob_device = await device(client, bob)
    channel = dm(ann, bob)

    for text in ("hi", "are you there?", "call me   back\nplease"):
        await say(client, ann, channel, text)

    (line,) = await wait_sent(folder, 1)
    assert (line["user_id"], line["device_id"], line["platform"]) == (
        bob["user_id"],
        bob_device,
        "apns",
    )
    assert (line["kind"], line["conversation"], line["count"]) == ("message", channel, 3)
    assert (line["sender"], line["sender_name"]) == (ann["user_id"], "ann")
    assert line["title"] == "3 new messages from ann"
    assert line["body"] == "call me back please"
    assert line["last_offset"] == 3
    store = client.app[STORE]
    await until_none_pending(client, bob)
    # The sender is never told of their own messages; a later message is a new notification.
    assert await store.pending_notifications(ann["user_id"]) == []
    await say(client, ann, channel, "one more")
    first, second = await wait_sent(folder, 2)
    assert first == line
    assert (second["count"], second["title"], second["body"]) == (1, "ann", "one more")


async def test_a_member_with_a_live_socket_gets_no_notification(
    make_client: Callable[..., Any], tmp_path: Path
) -> None:
    client = await make_client(push_delay=0.0, push_poll=0.05)
    folder = tmp_path / "push"
    ann, bob, cid = [await register(client, name) for name in ("ann", "bob", "cid")]
    await device(client, bob, "b" * 64)
    await device(client, cid, "c" * 64)
    async with client.post(
        "/v1/groups",
        json={"name": "trio", "members": [bob["user_id"], cid["user_id"]]},
        headers=bearer(ann),
    ) as r:
        group = await r.json()
    online = await WsClient.connect(client, bob["access_token"])
    await online.result("ping")

    await say(client, ann, f"group:{group['group_id']}", "lunch?")

    (line,) = await wait_sent(folder, 1)
    assert (line["user_id"], line["count"]) == (cid["user_id"], 1)
    assert line["title"] == "ann in a group"
    await idle(client)
    assert await client.app[STORE].pending_notifications(bob["user_id"]) == []
    assert client.app[SERVICES].notifier.stats.online == 1  # type: ignore[union-attr]
    await online.ws.close()


async def test_a_member_back_online_before_it_is_due_is_not_notified(
    make_client: Callable[..., Any], tmp_path: Path
) -> None:
    client = await make_client(push_delay=3.0, push_poll=0.05)
    ann, bob, cid = [await register(client, name) for name in ("ann", "bob", "cid")]
    await device(client, bob, "b" * 64)
    await device(client, cid, "c" * 64)
    await say(client, ann, dm(ann, bob), "still there?")
    await idle(client)
    (pending,) = await client.app[STORE].pending_notifications(bob["user_id"])
    assert pending.count == 1
    back = await WsClient.connect(client, bob["access_token"])  # bob opens the app
    await back.result("ping")
    await say(client, ann, dm(ann, cid), "and you?")  # a send to wait for

    (line,) = await wait_sent(tmp_path / "push", 1)
    assert line["user_id"] == cid["user_id"]
    await until_none_pending(client, bob)
    assert [x["user_id"] for x in sent(tmp_path / "push")] == [cid["user_id"]]
    await back.ws.close()


async def test_a_user_without_devices_is_not_sent_anything(
    make_client: Callable[..., Any], tmp_path: Path
) -> None:
    client = await make_client(push_delay=0.0, push_poll=0.05)
    ann, bob, cid = [await register(client, name) for name in ("ann", "bob", "cid")]
    await device(client, cid)
    await say(client, ann, dm(ann, bob), "hello")
    await say(client, ann, dm(ann, cid), "hello")
    (line,) = await wait_sent(tmp_path / "push", 1)
    assert line["user_id"] == cid["user_id"]
    await idle(client)
    # Nothing was even written for bob: he cannot be reached.
    assert await client.app[STORE].pending_notifications(bob["user_id"]) == []
    stats = client.app[SERVICES].notifier.stats  # type: ignore[union-attr]
    assert (stats.no_device, stats.decided) == (1, 1)


async def test_notifications_beyond_the_cap_wait_for_the_next_minute(
    make_client: Callable[..., Any], tmp_path: Path
) -> None:
    client = await make_client(push_delay=0.0, push_poll=0.05, push_per_minute=2)
    bob = await register(client, "bob")
    await device(client, bob)
    senders = [await register(client, f"sender{i}") for i in range(3)]
    while time.time() % 60 > 40:  # the three sends must fall in one minute of the cap
        await asyncio.sleep(0.5)
    for sender in senders:
        await say(client, sender, dm(sender, bob), "hey")

    lines = await wait_sent(tmp_path / "push", 2)
    store = client.app[STORE]
    async with asyncio.timeout(TIMEOUT):
        # The third is claimed, refused a slot, and released to the next minute.
        while not (held := await store.pending_notifications(bob["user_id"])) or any(
            n.due_at % 60_000 for n in held
        ):
            await asyncio.sleep(0.02)
    assert len(held) == 1
    held_one = held[0]
    assert len(sent(tmp_path / "push")) == 2
    assert {line["conversation"] for line in lines} | {held_one.conversation} == {
        dm(s, bob) for s in senders
    }
    assert (held_one.attempts, held_one.lease) == (0, None)
    assert client.app[SERVICES].notifier is not None
