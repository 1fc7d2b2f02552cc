"""Push devices over REST and the WebSocket, against the real app (SQLite store)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.clients import WsClient, bearer, register

APNS = {"platform": "apns", "token": "a" * 64, "app_version": "3.2.1", "locale": "en-GB"}


async def post(client: Any, account: dict[str, Any], body: dict[str, Any]) -> tuple[int, Any]:
    async with client.post("/v1/devices", json=body, headers=bearer(account)) as r:
        return r.status, await r.json()


async def listed(client: Any, account: dict[str, Any]) -> dict[str, Any]:
    async with client.get("/v1/devices", headers=bearer(account)) as r:
        assert r.status == 200
        return await r.json()  # type: ignore[no-any-return]


async def test_a_device_is_registered_listed_refreshed_and_deleted(client: Any) -> None:
    ann = await register(client, "ann")

    status, first = await post(client, ann, APNS)
    assert status == 201
    assert first["duplicate"] is False
    assert first["dropped"] == []
    assert (first["platform"], first["app_version"], first["locale"]) == ("apns", "3.2.1", "en-GB")
    assert "token" not in first

    status, again = await post(client, ann, {**APNS, "app_version": "3.3.0", "locale": "fr"})
    assert status == 200
    assert again["duplicate"] is True
    assert again["device_id"] == first["device_id"]
    assert (again["app_version"], again["locale"]) == ("3.3.0", "fr")

    page = await listed(client, ann)
    assert page["max_devices"] == 20
    assert [d["device_id"] for d in page["devices"]] == [first["device_id"]]
    assert page["devices"][0]["app_version"] == "3.3.0"

    bob = await register(client, "bob")
    async with client.delete(f"/v1/devices/{first['device_id']}", headers=bearer(bob)) as r:
        assert (r.status, (await r.json())["code"]) == (404, "not_found")
    async with client.delete(f"/v1/devices/{first['device_id']}", headers=bearer(ann)) as r:
        assert (r.status, await r.json()) == (
            200,
            {"device_id": first["device_id"], "deleted": True},
        )
    async with client.delete(f"/v1/devices/{first['device_id']}", headers=bearer(ann)) as r:
        assert r.status == 404
    async with client.delete("/v1/devices/not-an-id", headers=bearer(ann)) as r:
        assert (r.status, (await r.json())["code"]) == (400, "invalid_params")
    assert (await listed(client, ann))["devices"] == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("platform", "wns"),
        ("token", ""),
        ("token", "has space"),
        ("token", "x" * 1025),
        ("app_version", ""),
        ("locale", "english please"),
        ("locale", "e"),
    ],
)
async def test_bad_registrations_are_refused(client: Any, field: str, value: str) -> None:
    ann = await register(client, "ann")
    status, body = await post(client, ann, {**APNS, field: value})
    assert (status, body["code"]) == (400, "invalid_params")
    assert f"$.{field}" in body["message"]
    assert (await listed(client, ann))["devices"] == []


async def test_missing_fields_and_no_token_are_refused(client: Any) -> None:
    ann = await register(client, "ann")
    status, body = await post(client, ann, {"platform": "fcm"})
    assert (status, body["code"]) == (400, "invalid_params")
    async with client.post("/v1/devices", json=APNS) as r:
        assert r.status == 401


async def test_the_least_recently_registered_device_is_dropped_beyond_the_bound(
    make_client: Callable[..., Any],
) -> None:
    client = await make_client(max_devices=2)
    ann = await register(client, "ann")
    made = []
    for i in range(2):
        status, body = await post(client, ann, {**APNS, "token": f"tok{i}"})
        assert status == 201
        made.append(body["device_id"])

    status, third = await post(client, ann, {**APNS, "platform": "fcm", "token": "tok2"})
    assert status == 201
    assert third["dropped"] == [made[0]]
    page = await listed(client, ann)
    assert page["max_devices"] == 2
    assert [d["device_id"] for d in page["devices"]] == [made[1], third["device_id"]]


async def test_the_ops_on_a_socket_are_the_same_as_the_routes(client: Any) -> None:
    ann = await register(client, "ann")
    ws = await WsClient.connect(client, ann["access_token"])
    registered = await ws.result("register_device", **APNS)
    assert registered["duplicate"] is False
    assert (await ws.result("register_device", **APNS))["duplicate"] is True
    page = await ws.result("devices")
    assert [d["device_id"] for d in page["devices"]] == [registered["device_id"]]
    assert (await listed(client, ann))["devices"] == page["devices"]
    gone = await ws.result("unregister_device", device_id=registered["device_id"])
    assert gone == {"device_id": registered["device_id"], "deleted": True}
    frame = await ws.call("unregister_device", device_id=registered["device_id"])
    assert (frame["op"], frame["code"]) == ("error", "not_found")
    await ws.ws.close()
