"""Push through SNS mobile push: a real moto server over HTTP stands in for SNS; what it was
sent is read back from moto's own API (``/moto-api/data.json``), nothing in-process is patched.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aioboto3
import aiohttp
import orjson
import pytest

from gateway.push.drain import Drainer
from gateway.push.sns import SnsSink
from storage.sqlite import SQLiteStore
from tests.support.clients import TIMEOUT, bearer, register
from tests.support.moto_server import ACCESS_KEY, REGION, SECRET_KEY, MotoServer
from tests.support.servers import free_port


@pytest.fixture
def session() -> aioboto3.Session:
    return aioboto3.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    )


async def application(moto_server: MotoServer, session: aioboto3.Session, platform: str) -> str:
    """A platform application, as an operator makes one (credentials are moto's placeholders)."""
    async with session.client("sns", endpoint_url=moto_server.url) as sns:
        answer = await sns.create_platform_application(
            Name=f"moosic-{uuid.uuid4().hex[:8]}",
            Platform=platform,
            Attributes={"PlatformCredential": "key", "PlatformPrincipal": "cert"},
        )
    return str(answer["PlatformApplicationArn"])


@pytest.fixture
async def apps(moto_server: MotoServer, session: aioboto3.Session) -> dict[str, str]:
    return {
        "apns": await application(moto_server, session, "APNS"),
        "fcm": await application(moto_server, session, "GCM"),
    }


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "push.db")
    await opened.open()
    yield opened
    await opened.close()


async def endpoints(moto_server: MotoServer) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{moto_server.url}/moto-api/data.json") as r,
    ):
        data = await r.json(content_type=None)
    found: list[dict[str, Any]] = data.get("sns", {}).get("PlatformEndpoint", [])
    return found


async def messages_of(moto_server: MotoServer, device_id: str) -> list[dict[str, Any]]:
    """The messages SNS took for the device's endpoints (made with the device id as user data)."""
    found = []
    for endpoint in await endpoints(moto_server):
        if endpoint["custom_user_data"] == device_id:
            found.extend(orjson.loads(m) for m in endpoint["messages"].values())
    return found


def sink(moto_server: MotoServer, session: aioboto3.Session, apps: dict[str, str]) -> SnsSink:
    return SnsSink(applications=apps, region=REGION, endpoint_url=moto_server.url, session=session)


async def queue_one(store: SQLiteStore, user: str, text: str = "hello") -> None:
    await store.add_notifications(
        [user], f"dm:ann:{user}", "ann", text, 1, now=1, due_at=1, max_pending=10
    )


async def disabled_endpoint(
    moto_server: MotoServer, session: aioboto3.Session, app: str, token: str
) -> str:
    """An endpoint the provider has disabled (the app was uninstalled)."""
    async with session.client("sns", endpoint_url=moto_server.url) as sns:
        made = await sns.create_platform_endpoint(PlatformApplicationArn=app, Token=token)
        await sns.set_endpoint_attributes(
            EndpointArn=made["EndpointArn"], Attributes={"Enabled": "false"}
        )
    return str(made["EndpointArn"])


async def test_each_device_gets_its_endpoint_and_a_dead_one_is_dropped(
    moto_server: MotoServer, session: aioboto3.Session, apps: dict[str, str], store: SQLiteStore
) -> None:
    user = f"u{uuid.uuid4().hex[:8]}"
    phone = (await store.register_device(user, "apns", uuid.uuid4().hex, "1", "en", limit=5)).device
    dead_token = uuid.uuid4().hex
    dead = (await store.register_device(user, "apns", dead_token, "1", "en", limit=5)).device
    dead_arn = await disabled_endpoint(moto_server, session, apps["apns"], dead_token)
    await store.set_device_endpoint(user, dead.id, dead_arn)
    tablet = (await store.register_device(user, "fcm", uuid.uuid4().hex, "1", "en", limit=5)).device
    await queue_one(store, user, "are you up?")
    drainer = Drainer(store, sink(moto_server, session, apps), clock=lambda: 10.0)
    await drainer.sink.open()
    try:
        assert await drainer.drain_once() == 1

        # One device's refusal did not stop the others.
        (to_phone,) = await messages_of(moto_server, phone.id)
        apns = orjson.loads(to_phone["APNS"])
        assert apns["aps"]["alert"] == {"title": "ann", "body": "are you up?"}
        assert apns["aps"]["thread-id"] == f"dm:ann:{user}"
        assert apns["moosic"]["count"] == 1
        (to_tablet,) = await messages_of(moto_server, tablet.id)
        gcm = orjson.loads(to_tablet["GCM"])
        assert gcm["notification"]["tag"] == f"dm:ann:{user}"
        assert gcm["data"]["count"] == "1"
        left = {d.id: d for d in await store.list_devices(user)}
        assert set(left) == {phone.id, tablet.id}
        assert all(d.endpoint and ":endpoint/" in d.endpoint for d in left.values())
        assert await store.pending_notifications(user) == []
        assert (drainer.stats.sent, drainer.stats.devices_dropped) == (1, 1)
        # Its endpoint is deleted too (moto's data.json keeps deleted models: ask SNS).
        async with session.client("sns", endpoint_url=moto_server.url) as sns:
            listed = await sns.list_endpoints_by_platform_application(
                PlatformApplicationArn=apps["apns"]
            )
        assert dead_arn not in {e["EndpointArn"] for e in listed["Endpoints"]}
        assert len(listed["Endpoints"]) == 1  # the phone's

        # The next send reuses the remembered endpoints: no new one is made.
        await queue_one(store, user, "again")
        assert await drainer.drain_once() == 1
        assert len(await messages_of(moto_server, phone.id)) == 2
        mine = [e for e in await endpoints(moto_server) if e["custom_user_data"] == phone.id]
        assert len(mine) == 1
    finally:
        await drainer.sink.close()


async def test_an_unreachable_sns_is_retried_then_given_up(
    session: aioboto3.Session, apps: dict[str, str], store: SQLiteStore
) -> None:
    user = f"u{uuid.uuid4().hex[:8]}"
    await store.register_device(user, "apns", uuid.uuid4().hex, "1", "en", limit=5)
    await queue_one(store, user)
    closed = SnsSink(
        applications=apps,
        region=REGION,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        session=session,
        timeout=1.0,
    )
    now = [10.0]
    drainer = Drainer(store, closed, retries=2, retry_backoff=5.0, clock=lambda: now[0])
    await closed.open()
    try:
        assert await drainer.drain_once() == 1
        (waiting,) = await store.pending_notifications(user)
        assert waiting.attempts == 1
        assert waiting.due_at == 15_000  # now + the backoff
        assert drainer.stats.device_failures == 3  # DEVICE_TRIES, each failed
        assert await drainer.drain_once() == 0  # not due yet
        now[0] = 15.0
        assert await drainer.drain_once() == 1
        assert await store.pending_notifications(user) == []
        assert (drainer.stats.retried, drainer.stats.failed, drainer.stats.sent) == (1, 1, 0)
        assert len(await store.list_devices(user)) == 1  # a failing provider drops no device
    finally:
        await closed.close()


async def test_a_dm_reaches_an_offline_phone_through_sns(
    moto_server: MotoServer,
    apps: dict[str, str],
    make_client: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    client = await make_client(
        push_sink="sns",
        sns_endpoint=moto_server.url,
        sns_region=REGION,
        sns_apns_arn=apps["apns"],
        push_delay=0.0,
        push_poll=0.05,
    )
    ann = await register(client, "ann")
    bob = await register(client, "bob")
    async with client.post(
        "/v1/devices",
        json={"platform": "apns", "token": uuid.uuid4().hex, "app_version": "1", "locale": "en"},
        headers=bearer(bob),
    ) as r:
        device_id = (await r.json())["device_id"]
    channel = "dm:" + ":".join(sorted([ann["user_id"], bob["user_id"]]))
    async with client.post(
        f"/v1/channels/{channel}/messages", json={"data": {"text": "hey"}}, headers=bearer(ann)
    ) as r:
        assert r.status == 201

    async with asyncio.timeout(TIMEOUT):
        while not (found := await messages_of(moto_server, device_id)):
            await asyncio.sleep(0.05)
    (message,) = found
    assert orjson.loads(message["APNS"])["aps"]["alert"] == {"title": "ann", "body": "hey"}


async def test_a_token_with_an_endpoint_already_reuses_it(
    moto_server: MotoServer, session: aioboto3.Session, apps: dict[str, str], store: SQLiteStore
) -> None:
    token = uuid.uuid4().hex
    first = (await store.register_device("ann", "apns", token, "1", "en", limit=5)).device
    await queue_one(store, "ann")
    drainer = Drainer(store, sink(moto_server, session, apps), clock=lambda: 10.0)
    await drainer.sink.open()
    try:
        assert await drainer.drain_once() == 1
        # The phone changes hands: a new device of the same token, another user.
        second = (await store.register_device("bob", "apns", token, "1", "en", limit=5)).device
        await queue_one(store, "bob", "for bob")
        assert await drainer.drain_once() == 1

        (moved,) = await store.list_devices("bob")
        (original,) = [e for e in await endpoints(moto_server) if e["custom_user_data"] == first.id]
        assert moved.id == second.id
        assert moved.endpoint == original["arn"]
        bodies = [
            orjson.loads(m["APNS"])["aps"]["alert"]["body"]
            for m in await messages_of(moto_server, first.id)
        ]
        assert bodies == ["hello", "for bob"]
        assert drainer.stats.devices_dropped == 0
    finally:
        await drainer.sink.close()
