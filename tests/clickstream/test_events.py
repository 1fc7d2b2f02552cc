"""The intake: every event type's schema, the refusals, dedupe by client event id, enrichment."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.app import create_app
from gateway.clickstream import service
from gateway.clickstream.buffer import EventBuffer
from gateway.keys import REGISTRY, SERVICES
from gateway.settings import Settings, SettingsError, load_settings
from handlers.base import Context
from handlers.errors import INVALID_PARAMS, SERVER_BUSY, OpError
from handlers.events import (
    MAX_BATCH,
    MAX_CLIENT_AGE_MS,
    MAX_CLIENT_AHEAD_MS,
    TYPE_NAMES,
    Intake,
    SeenEvents,
)
from tests.clickstream.conftest import NOW_MS, event, read_lines
from tests.support.clients import register

VALID: dict[str, dict[str, Any]] = {
    "app_open": {"platform": "android", "app_version": "3.2.1", "cold": False},
    "view_start": {"video_id": "v1", "source": "trending"},
    "watch_progress": {"video_id": "v1", "seconds_watched": 4.5, "position": 9.0},
    "view_end": {"video_id": "v1", "seconds_watched": 2.25, "completed": True},
    "swipe": {"video_id": "v1", "direction": "up", "next_video_id": "v2"},
    "like": {"video_id": "v1", "liked": False},
    "share": {"video_id": "v1", "target": "dm"},
    "search": {"query": "cats", "results": 12},
}

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("app_open", {"platform": "symbian"}, "$.platform"),
    ("app_open", {"app_version": "3 2"}, "$.app_version"),
    ("view_start", {}, "video_id"),
    ("view_start", {"video_id": "v1", "source": "tv"}, "$.source"),
    ("view_start", {"video_id": "bad id!"}, "$.video_id"),
    ("watch_progress", {"video_id": "v1"}, "seconds_watched"),
    ("watch_progress", {"video_id": "v1", "seconds_watched": -1}, "$.seconds_watched"),
    ("watch_progress", {"video_id": "v1", "seconds_watched": 86401}, "$.seconds_watched"),
    ("watch_progress", {"video_id": "v1", "seconds_watched": "5"}, "$.seconds_watched"),
    ("view_end", {"video_id": "v1"}, "seconds_watched"),
    ("view_end", {"video_id": "v1", "seconds_watched": 1, "completed": "yes"}, "$.completed"),
    ("swipe", {"video_id": "v1"}, "direction"),
    ("swipe", {"video_id": "v1", "direction": "sideways"}, "$.direction"),
    ("like", {}, "video_id"),
    ("like", {"video_id": "v1", "liked": 1}, "$.liked"),
    ("share", {"video_id": "v1"}, "target"),
    ("share", {"video_id": "v1", "target": "email"}, "$.target"),
    ("search", {}, "query"),
    ("search", {"query": ""}, "$.query"),
    ("search", {"query": "   "}, "$.query"),
    ("search", {"query": "x" * 201}, "$.query"),
    ("search", {"query": "cats", "results": -1}, "$.results"),
]


def test_every_type_has_a_valid_sample() -> None:
    assert set(VALID) == set(TYPE_NAMES)


@pytest.mark.parametrize("kind", sorted(VALID))
def test_each_type_is_taken_with_its_fields(kind: str, intake: Intake, buffer: EventBuffer) -> None:
    answer = intake.take("u1", "KH", [event(kind, f"e-{kind}", **VALID[kind])])
    assert answer == {"accepted": 1, "duplicates": 0, "refused": []}
    (record,) = buffer._queue
    line = orjson.loads(record.data)
    assert record.data.endswith(b"\n")
    assert record.partition_key == "u1"
    assert line["type"] == kind
    assert {k: line[k] for k in VALID[kind]} == VALID[kind]


@pytest.mark.parametrize(("kind", "fields", "where"), INVALID)
def test_bad_fields_are_refused_with_their_reason(
    kind: str, fields: dict[str, Any], where: str, intake: Intake, buffer: EventBuffer
) -> None:
    answer = intake.take("u1", "KH", [event(kind, "e1", **fields)])
    assert answer["accepted"] == 0
    (refused,) = answer["refused"]
    assert refused["code"] == INVALID_PARAMS.code
    assert refused["retryable"] is False
    assert refused["index"] == 0
    assert refused["event_id"] == "e1"
    assert where in refused["message"]
    assert not buffer._queue
    assert intake.stats.invalid == 1


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (b'{"type":"teleport","event_id":"e1","client_ts":1}', "$.type"),
        (b'{"event_id":"e1","client_ts":1}', "type"),
        (b'{"type":"like","client_ts":1,"video_id":"v1"}', "event_id"),
        (b'{"type":"like","event_id":"e1","video_id":"v1"}', "client_ts"),
        (b'{"type":"like","event_id":"","client_ts":1,"video_id":"v1"}', "$.event_id"),
        (b'{"type":"like","event_id":"a b","client_ts":1,"video_id":"v1"}', "$.event_id"),
        (b'{"type":"like","event_id":"e1","client_ts":-5,"video_id":"v1"}', "$.client_ts"),
        (b'{"type":"like","event_id":"e1","client_ts":"now","video_id":"v1"}', "$.client_ts"),
        (b"[1, 2]", "object"),
        (b'"like"', "object"),
    ],
)
def test_malformed_items_are_refused(item: bytes, message: str, intake: Intake) -> None:
    answer = intake.take("u1", None, [item])
    (refused,) = answer["refused"]
    assert refused["code"] == INVALID_PARAMS.code
    assert message in refused["message"]


def test_client_time_must_be_plausible(intake: Intake) -> None:
    old = NOW_MS - MAX_CLIENT_AGE_MS - 1
    ahead = NOW_MS + MAX_CLIENT_AHEAD_MS + 1
    items = [
        orjson.dumps({"type": "like", "event_id": "old", "client_ts": old, "video_id": "v"}),
        orjson.dumps({"type": "like", "event_id": "ahead", "client_ts": ahead, "video_id": "v"}),
        orjson.dumps({"type": "like", "event_id": "edge", "client_ts": old + 1, "video_id": "v"}),
    ]
    answer = intake.take("u1", None, items)
    assert answer["accepted"] == 1
    assert [(r["index"], r["event_id"]) for r in answer["refused"]] == [(0, "old"), (1, "ahead")]
    assert "older than 30 days" in answer["refused"][0]["message"]
    assert "ahead" in answer["refused"][1]["message"]


def test_a_batch_takes_the_good_items_and_names_the_bad(
    intake: Intake, buffer: EventBuffer
) -> None:
    items = [
        event("view_start", "a", video_id="v1"),
        event("swipe", "b", video_id="v1", direction="nowhere"),
        event("view_end", "c", video_id="v1", seconds_watched=3),
        b'{"type":"like"}',
        event("search", "d", query="dogs"),
    ]
    answer = intake.take("u1", "KH", items)
    assert answer["accepted"] == 3
    assert [(r["index"], r.get("event_id")) for r in answer["refused"]] == [(1, "b"), (3, None)]
    assert [orjson.loads(r.data)["event_id"] for r in buffer._queue] == ["a", "c", "d"]


def test_enrichment_is_the_servers_and_cannot_be_forged(
    intake: Intake, buffer: EventBuffer
) -> None:
    forged = event(
        "like",
        "e1",
        video_id="v1",
        user_id="someone-else",
        country="US",
        node="evil",
        region="mars",
        server_ts=1,
        extra="ignored",
    )
    assert intake.take("u1", "KH", [forged])["accepted"] == 1
    line = orjson.loads(buffer._queue[0].data)
    assert line == {
        "type": "like",
        "event_id": "e1",
        "client_ts": NOW_MS - 1000,
        "video_id": "v1",
        "liked": True,
        "user_id": "u1",
        "country": "KH",
        "node": "node-a:8080",
        "region": "ap-southeast-1",
        "server_ts": NOW_MS,
    }
    assert intake.take("u2", None, [event("like", "e2", video_id="v1")])["accepted"] == 1
    assert orjson.loads(buffer._queue[1].data)["country"] is None


def test_dedupe_by_user_and_client_event_id(intake: Intake, buffer: EventBuffer) -> None:
    first = intake.take("u1", "KH", [event("like", "e1", video_id="v1")] * 3)
    assert first == {"accepted": 1, "duplicates": 2, "refused": []}
    again = intake.take("u1", "KH", [event("like", "e1", video_id="v1")])
    assert again == {"accepted": 0, "duplicates": 1, "refused": []}
    other_user = intake.take("u2", "KH", [event("like", "e1", video_id="v1")])
    assert other_user["accepted"] == 1
    assert len(buffer._queue) == 2
    assert intake.stats.duplicates == 3


def test_the_dedupe_memory_is_bounded_least_recent_first() -> None:
    seen = SeenEvents(2)
    seen.add(("u", "a"))
    seen.add(("u", "b"))
    assert ("u", "a") in seen  # a is now the most recent
    seen.add(("u", "c"))
    assert ("u", "b") not in seen
    assert ("u", "a") in seen
    assert ("u", "c") in seen
    assert len(seen) == 2
    off = SeenEvents(0)
    off.add(("u", "a"))
    assert ("u", "a") not in off


def test_a_full_buffer_refuses_with_server_busy(buffer: EventBuffer, intake: Intake) -> None:
    buffer.limit = 3
    answer = intake.take("u1", "KH", [event("like", f"e{i}", video_id="v1") for i in range(5)])
    assert answer["accepted"] == 3
    busy = answer["refused"]
    assert [(r["index"], r["code"], r["retryable"]) for r in busy] == [
        (3, SERVER_BUSY.code, True),
        (4, SERVER_BUSY.code, True),
    ]
    with pytest.raises(OpError) as refused:
        intake.take("u1", "KH", [event("like", "e3", video_id="v1")])
    assert refused.value.kind is SERVER_BUSY
    assert refused.value.to_dict()["retryable"] is True
    # Nothing refused was remembered: the same events are taken once there is room.
    buffer.limit = 10
    answer = intake.take("u1", "KH", [event("like", f"e{i}", video_id="v1") for i in range(5)])
    assert answer == {"accepted": 2, "duplicates": 3, "refused": []}


async def test_the_track_op_through_a_registry(aiohttp_client: Any, settings: Settings) -> None:
    """Frames as a WebSocket sends them, decoded by the op registry the gateway uses."""
    app = create_app(settings)
    clickstream = app[service.CLICKSTREAM]
    client = await aiohttp_client(app)
    registry = app[REGISTRY]
    ctx = Context(user_id="u1", services=app[SERVICES], country="KH")
    now_ms = int(time.time() * 1000)
    items = [
        orjson.loads(event("like", "e1", at=now_ms, video_id="v1")),
        {"type": "like", "event_id": "e2"},
    ]
    frame = orjson.dumps({"op": "track", "id": 7, "events": items})
    reply = orjson.loads(await registry.handle(ctx, frame))
    assert reply["id"] == 7
    assert reply["result"]["accepted"] == 1
    assert [r["event_id"] for r in reply["result"]["refused"]] == ["e2"]
    assert orjson.loads(clickstream.buffer._queue[0].data)["country"] == "KH"
    for bad in ([], [{}] * (MAX_BATCH + 1)):
        answer = orjson.loads(
            await registry.handle(ctx, orjson.dumps({"op": "track", "id": 8, "events": bad}))
        )
        assert (answer["op"], answer["code"]) == ("error", INVALID_PARAMS.code)
    await client.close()


async def test_both_transports_take_events_and_the_drain_writes_them(
    aiohttp_client: Any, settings: Settings
) -> None:
    """``track`` on a real WebSocket and ``POST /v1/events``: answered per item, deduplicated
    across the two, enriched, and in the files once the app has shut down."""
    app = create_app(settings)
    client = await aiohttp_client(app)
    tokens = await register(client, "clicker")
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    now_ms = int(time.time() * 1000)
    ws = await client.ws_connect(f"/ws?token={tokens['access_token']}")
    items = [
        orjson.loads(event("view_start", "w1", at=now_ms, video_id="v1")),
        orjson.loads(event("swipe", "w2", at=now_ms, video_id="v1", direction="nowhere")),
    ]
    await ws.send_str(orjson.dumps({"op": "track", "id": 1, "events": items}).decode())
    reply = orjson.loads(await ws.receive_str(timeout=10))
    assert reply["result"]["accepted"] == 1
    assert [(r["index"], r["code"]) for r in reply["result"]["refused"]] == [(1, "invalid_params")]
    body = {
        "events": [
            orjson.loads(event("view_start", "w1", at=now_ms, video_id="v1")),  # seen on the ws
            orjson.loads(
                event("watch_progress", "r1", at=now_ms, video_id="v1", seconds_watched=4.5)
            ),
            orjson.loads(event("search", "r2", at=now_ms, query="   ")),
        ]
    }
    answer = await client.post("/v1/events", json=body, headers=auth)
    assert answer.status == 200
    doc = await answer.json()
    assert (doc["accepted"], doc["duplicates"]) == (1, 1)
    assert [(r["index"], r["event_id"], r["code"]) for r in doc["refused"]] == [
        (2, "r2", "invalid_params")
    ]
    assert (await client.post("/v1/events", json={"events": []}, headers=auth)).status == 400
    assert (await client.post("/v1/events", json=body)).status == 401
    too_big = {"events": [{"type": "search", "query": "x" * 199}] * 6000}
    large = {  # past MOOSIC_REST_MAX_BODY_BYTES (64 KiB), within this route's 1 MiB
        "events": [
            orjson.loads(event("search", f"s{n}", at=now_ms, query="q" * 150)) for n in range(400)
        ]
    }
    assert len(orjson.dumps(large)) > settings.http.rest_max_body_bytes
    answer = await client.post(
        "/v1/events",
        data=io.BytesIO(orjson.dumps(large)),
        headers={**auth, "Content-Type": "application/json"},
    )
    assert (answer.status, (await answer.json())["accepted"]) == (200, 400)
    big = io.BytesIO(orjson.dumps(too_big))  # over 1 MiB
    headers = {**auth, "Content-Type": "application/json"}
    assert (await client.post("/v1/events", data=big, headers=headers)).status == 413
    await ws.close()
    await client.close()  # shuts the app down: the buffer drains into the files
    lines = read_lines(Path(settings.clickstream.clickstream_dir))
    assert [(line["event_id"], line["type"]) for line in lines] == [
        ("w1", "view_start"),
        ("r1", "watch_progress"),
    ] + [(f"s{n}", "search") for n in range(400)]
    for line in lines:
        assert line["user_id"] == tokens["user_id"]
        assert line["region"] == settings.server.region
        assert line["country"] is None  # a loopback caller in a development run
        assert isinstance(line["server_ts"], int)


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"MOOSIC_CLICKSTREAM_SINK": "s3"}, "MOOSIC_CLICKSTREAM_SINK='s3': must be one of"),
        ({"MOOSIC_CLICKSTREAM_SINK": "kinesis"}, "MOOSIC_CLICKSTREAM_STREAM: required"),
        ({"MOOSIC_CLICKSTREAM_STREAM": "bad name"}, "is not a Kinesis stream name"),
        ({"MOOSIC_CLICKSTREAM_BUFFER": "0"}, "must be between 1"),
        ({"MOOSIC_CLICKSTREAM_BUFFER": "10"}, "MOOSIC_CLICKSTREAM_FLUSH_EVENTS: at most"),
        ({"MOOSIC_CLICKSTREAM_FLUSH_INTERVAL": "0"}, "must be between"),
        ({"MOOSIC_CLICKSTREAM_MAX_FILE_BYTES": "12"}, "must be between 1024"),
        ({"MOOSIC_CLICKSTREAM_RETRIES": "-1"}, "must be between 0"),
        ({"MOOSIC_CLICKSTREAM_KINESIS_ENDPOINT": "ftp://x"}, "must start with http://"),
        ({"MOOSIC_REGION": " "}, "MOOSIC_REGION"),
    ],
)
def test_clickstream_settings_are_validated(environ: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings({"MOOSIC_DEV": "1", **environ})
    assert any(problem in line for line in refused.value.problems), refused.value.problems


def test_clickstream_settings_parse() -> None:
    parsed = load_settings(
        {
            "MOOSIC_DEV": "1",
            "MOOSIC_REGION": "ap-southeast-1",
            "MOOSIC_CLICKSTREAM_SINK": "kinesis",
            "MOOSIC_CLICKSTREAM_STREAM": "moosic-clicks",
            "MOOSIC_CLICKSTREAM_BUFFER": "2000",
            "MOOSIC_CLICKSTREAM_FLUSH_EVENTS": "250",
            "MOOSIC_CLICKSTREAM_RETRIES": "0",
        }
    )
    assert (
        parsed.server.region,
        parsed.clickstream.clickstream_sink,
        parsed.clickstream.clickstream_stream,
    ) == (
        "ap-southeast-1",
        "kinesis",
        "moosic-clicks",
    )
    assert (parsed.clickstream.clickstream_buffer, parsed.clickstream.clickstream_flush_events) == (
        2000,
        250,
    )
    assert parsed.clickstream.clickstream_retries == 0
    assert Settings().clickstream.clickstream_sink == "file"
    assert Settings().server.region == "local"
