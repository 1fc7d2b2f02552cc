"""Push preferences and mutes over REST and the WebSocket, against the real app: what is kept,
what is refused and with which code."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.clients import WsClient, bearer, register

DEFAULT_KINDS = {"message": True, "mention": True, "follow": True, "comment": True, "video": True}


async def call(
    client: Any, method: str, path: str, account: dict[str, Any], body: Any = None
) -> tuple[int, Any]:
    async with client.request(method, path, json=body, headers=bearer(account)) as r:
        return r.status, await r.json()


async def test_settings_are_kept_replaced_whole_and_seen_by_the_websocket(
    make_client: Callable[..., Any],
) -> None:
    client = await make_client()
    bob = await register(client, "bob")
    status, body = await call(client, "GET", "/v1/notifications/settings", bob)
    assert (status, body) == (
        200,
        {
            "kinds": DEFAULT_KINDS,
            "quiet_hours": None,
            "quiet_now": False,
            "mutes": [],
            "max_mutes": 200,
        },
    )
    quiet = {"start": "22:30", "end": "07:00", "timezone": "America/New_York"}
    status, body = await call(
        client,
        "PUT",
        "/v1/notifications/settings",
        bob,
        {"kinds": {"follow": False, "comment": False}, "quiet_hours": quiet},
    )
    assert status == 200, body
    assert body["kinds"] == {**DEFAULT_KINDS, "follow": False, "comment": False}
    assert body["quiet_hours"] == quiet

    ws = await WsClient.connect(client, bob["access_token"])
    got = await ws.result("notification_settings")
    assert (got["kinds"], got["quiet_hours"]) == (body["kinds"], quiet)
    # Replaced whole: what is left out is back to its default.
    got = await ws.result("set_notification_settings", kinds={"video": False})
    assert (got["kinds"], got["quiet_hours"]) == ({**DEFAULT_KINDS, "video": False}, None)
    status, body = await call(client, "GET", "/v1/notifications/settings", bob)
    assert body["kinds"] == {**DEFAULT_KINDS, "video": False}
    await ws.close()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"kinds": {"likes": False}}, "likes"),
        ({"kinds": {"message": "no"}}, "$.kinds.message"),
        ({"quiet_hours": {"start": "24:00", "end": "07:00", "timezone": "UTC"}}, "start"),
        ({"quiet_hours": {"start": "7:00", "end": "08:00", "timezone": "UTC"}}, "start"),
        ({"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Mars/Base"}}, "timezone"),
        ({"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "+15:00"}}, "timezone"),
        ({"quiet_hours": {"start": "22:00", "end": "22:00", "timezone": "UTC"}}, "different"),
        ({"quiet_hours": {"start": "22:00", "end": "07:00"}}, "timezone"),
    ],
)
async def test_bad_settings_are_invalid_params_and_change_nothing(
    make_client: Callable[..., Any], body: dict[str, Any], message: str
) -> None:
    client = await make_client()
    bob = await register(client, "bob")
    status, answer = await call(client, "PUT", "/v1/notifications/settings", bob, body)
    assert (status, answer["code"]) == (400, "invalid_params"), answer
    assert message in answer["message"]
    _, kept = await call(client, "GET", "/v1/notifications/settings", bob)
    assert (kept["kinds"], kept["quiet_hours"]) == (DEFAULT_KINDS, None)


async def test_mutes_are_checked_bounded_and_listed_until_they_end(
    make_client: Callable[..., Any],
) -> None:
    client = await make_client(push_max_mutes=2)
    ann, bob, cid = [await register(client, name) for name in ("ann", "bob", "cid")]
    dm_ab = "dm:" + ":".join(sorted([ann["user_id"], bob["user_id"]]))
    dm_ac = "dm:" + ":".join(sorted([ann["user_id"], cid["user_id"]]))
    dm_bc = "dm:" + ":".join(sorted([bob["user_id"], cid["user_id"]]))
    status, created = await call(
        client, "POST", "/v1/groups", ann, {"name": "g", "members": [bob["user_id"]]}
    )
    group = "group:" + created["group_id"]
    until = int(time.time() * 1000) + 3_600_000

    assert await call(client, "PUT", f"/v1/notifications/mutes/{dm_ab}", bob, {}) == (
        200,
        {"channel": dm_ab, "muted": True, "until": None},
    )
    assert await call(client, "PUT", f"/v1/notifications/mutes/{group}", bob, {"until": until}) == (
        200,
        {"channel": group, "muted": True, "until": until},
    )
    status, answer = await call(client, "PUT", f"/v1/notifications/mutes/{dm_bc}", bob, {})
    assert (status, answer["code"]) == (409, "limit_exceeded")
    _, listed = await call(client, "GET", "/v1/notifications/settings", bob)
    assert listed["mutes"] == [
        {"channel": c, "until": u} for c, u in sorted([(dm_ab, None), (group, until)])
    ]
    assert listed["max_mutes"] == 2

    refusals = [
        (f"/v1/notifications/mutes/{dm_ac}", {}, 403, "forbidden"),  # not bob's
        ("/v1/notifications/mutes/room:lobby", {}, 400, "invalid_channel"),
        ("/v1/notifications/mutes/dm:nope", {}, 400, "invalid_channel"),
        (f"/v1/notifications/mutes/{dm_ab}", {"until": 1000}, 400, "invalid_params"),
        (f"/v1/notifications/mutes/{dm_ab}", {"until": until * 10}, 400, "invalid_params"),
        (f"/v1/notifications/mutes/{dm_ab}", {"until": "soon"}, 400, "invalid_params"),
    ]
    for path, body, code, name in refusals:
        status, answer = await call(client, "PUT", path, bob, body)
        assert (status, answer["code"]) == (code, name), (path, body, answer)

    ws = await WsClient.connect(client, bob["access_token"])
    assert await ws.result("unmute_conversation", channel=group) == {
        "channel": group,
        "muted": False,
        "changed": True,
    }
    assert (await ws.result("unmute_conversation", channel=group))["changed"] is False
    assert (await ws.result("mute_conversation", channel=dm_bc))["muted"] is True
    frame = await ws.call("mute_conversation", channel="room:lobby")
    assert (frame["op"], frame["code"]) == ("error", "invalid_channel")
    await ws.close()
    _, listed = await call(client, "GET", "/v1/notifications/settings", bob)
    assert [m["channel"] for m in listed["mutes"]] == sorted([dm_ab, dm_bc])
    status, answer = await call(client, "DELETE", f"/v1/notifications/mutes/{dm_ab}", bob)
    assert (status, answer["changed"]) == (200, True)
