"""The Kinesis sink against a real moto server over HTTP, behind a proxy that fails entries.

Nothing is patched: the sink's aioboto3 client talks HTTP to the proxy, the proxy to moto.
Every accepted event must be in the stream exactly once, whatever share of the ``PutRecords``
entries (and whole calls) failed on the way, and what fails past the retry cap must be in the
dead-letter file, not in the stream.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aioboto3
import orjson
import pytest

from gateway.clickstream.kinesis import MAX_CALL_BYTES, MAX_RECORDS, chunks
from gateway.clickstream.service import Clickstream
from gateway.metrics import Metrics
from gateway.settings import Settings
from handlers.events import Record
from tests.clickstream.conftest import event, read_lines
from tests.clickstream.kinesis_proxy import THROTTLED, KinesisProxy
from tests.support.moto_server import ACCESS_KEY, REGION, SECRET_KEY, MotoServer


@pytest.fixture
def session() -> aioboto3.Session:
    return aioboto3.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    )


@pytest.fixture
async def stream(moto_server: MotoServer, session: aioboto3.Session) -> str:
    name = f"clicks-{os.urandom(4).hex()}"
    async with session.client("kinesis", endpoint_url=moto_server.url) as kinesis:
        await kinesis.create_stream(StreamName=name, ShardCount=3)
        waiter = kinesis.get_waiter("stream_exists")
        await waiter.wait(StreamName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 300})
    return name


@pytest.fixture
async def proxy(moto_server: MotoServer) -> AsyncIterator[KinesisProxy]:
    running = await KinesisProxy(moto_server.url).start()
    yield running
    await running.close()


async def stream_records(
    moto_server: MotoServer, session: aioboto3.Session, name: str
) -> list[tuple[str, dict[str, Any]]]:
    """(partition key, event) of every record in the stream, read from moto directly."""
    found: list[tuple[str, dict[str, Any]]] = []
    async with session.client("kinesis", endpoint_url=moto_server.url) as kinesis:
        shards = (await kinesis.list_shards(StreamName=name))["Shards"]
        for shard in shards:
            iterator = (
                await kinesis.get_shard_iterator(
                    StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                )
            )["ShardIterator"]
            while iterator:
                page = await kinesis.get_records(ShardIterator=iterator, Limit=10_000)
                if not page["Records"]:
                    break
                found += [(r["PartitionKey"], orjson.loads(r["Data"])) for r in page["Records"]]
                iterator = page.get("NextShardIterator")
    return found


def kinesis_settings(
    settings: Settings, tmp_path: Path, proxy: KinesisProxy, name: str
) -> Settings:
    return settings.changed(
        clickstream_sink="kinesis",
        clickstream_stream=name,
        clickstream_kinesis_region=REGION,
        clickstream_kinesis_endpoint=proxy.url,
        clickstream_dir=str(tmp_path / "clickstream"),
        clickstream_flush_events=700,
        clickstream_flush_interval=0.05,
        clickstream_retries=4,
        clickstream_retry_backoff=0.01,
    )


def batches(users: int, per_user: int) -> list[tuple[str, list[bytes]]]:
    now_ms = int(time.time() * 1000)
    kinds = [
        ("view_start", {"video_id": "v1"}),
        ("watch_progress", {"video_id": "v1", "seconds_watched": 3.5}),
        ("view_end", {"video_id": "v1", "seconds_watched": 1.0}),
        ("like", {"video_id": "v1"}),
    ]
    return [
        (
            f"user{u}",
            [
                event(kinds[n % 4][0], f"e{n}", at=now_ms, **kinds[n % 4][1])
                for n in range(per_user)
            ],
        )
        for u in range(users)
    ]


def first_seen(share: int) -> Any:
    """Fail each ``share``-th entry of a call the first time its record is seen."""
    failed_once: set[str] = set()

    def choose(index: int, data: bytes, _key: str) -> bool:
        digest = hashlib.sha256(data).hexdigest()
        if index % share == 0 and digest not in failed_once:
            failed_once.add(digest)
            return True
        return False

    return choose


async def test_every_accepted_event_arrives_exactly_once_despite_failed_entries(
    settings: Settings,
    tmp_path: Path,
    moto_server: MotoServer,
    session: aioboto3.Session,
    stream: str,
    proxy: KinesisProxy,
) -> None:
    proxy.choose = first_seen(3)
    proxy.fail_calls = 1
    metrics = Metrics()
    clickstream = Clickstream(
        kinesis_settings(settings, tmp_path, proxy, stream), metrics, session=session
    )
    await clickstream.start()
    accepted: list[tuple[str, str]] = []
    for user, items in batches(users=60, per_user=25):
        answer = clickstream.intake.take(user, "KH", items)
        assert answer["refused"] == []
        accepted += [(user, f"e{n}") for n in range(answer["accepted"])]
    # A resent batch is acknowledged as duplicates and not sent again.
    resent = clickstream.intake.take("user0", "KH", batches(1, 25)[0][1])
    assert resent == {"accepted": 0, "duplicates": 25, "refused": []}
    await clickstream.close()

    arrived = await stream_records(moto_server, session, stream)
    assert sorted((key, e["event_id"]) for key, e in arrived) == sorted(accepted)
    assert all(key == e["user_id"] for key, e in arrived)  # partition key = user id
    assert len(accepted) == 1500
    assert any(call.whole_call_failed for call in proxy.calls)
    assert sum(call.failed for call in proxy.calls if not call.whole_call_failed) >= 500
    assert all(call.entries <= MAX_RECORDS and call.bytes <= MAX_CALL_BYTES for call in proxy.calls)
    assert metrics.clickstream_events_written == 1500
    assert metrics.clickstream_records_retried >= 500
    assert metrics.clickstream_records_dead_lettered == 0
    assert read_lines(tmp_path / "clickstream", "dead-letter-*.jsonl") == []


async def test_what_fails_past_the_retry_cap_goes_to_the_dead_letter_file(
    settings: Settings,
    tmp_path: Path,
    moto_server: MotoServer,
    session: aioboto3.Session,
    stream: str,
    proxy: KinesisProxy,
) -> None:
    proxy.choose = lambda _index, _data, key: key == "user3"  # its shard never takes it
    metrics = Metrics()
    changed = kinesis_settings(settings, tmp_path, proxy, stream).changed(clickstream_retries=2)
    clickstream = Clickstream(changed, metrics, session=session)
    await clickstream.start()
    for user, items in batches(users=8, per_user=30):
        assert clickstream.intake.take(user, None, items)["accepted"] == 30
    await clickstream.close()

    arrived = await stream_records(moto_server, session, stream)
    assert sorted((key, e["event_id"]) for key, e in arrived) == sorted(
        (f"user{u}", f"e{n}") for u in range(8) if u != 3 for n in range(30)
    )
    dead = read_lines(tmp_path / "clickstream", "dead-letter-*.jsonl")
    assert sorted(str(d["record"]["event_id"]) for d in dead) == sorted(f"e{n}" for n in range(30))
    for letter in dead:
        assert letter["partition_key"] == "user3"
        assert letter["error_code"] == THROTTLED
        assert letter["attempts"] == 3  # the first try and two retries
        assert letter["record"]["user_id"] == "user3"
    assert metrics.clickstream_records_dead_lettered == 30
    assert metrics.clickstream_events_written == 210


def test_calls_hold_at_most_500_records_and_5_mib() -> None:
    small = [Record("u", b"x" * 99 + b"\n") for _ in range(1234)]
    assert [len(c) for c in chunks(small)] == [500, 500, 234]
    big = [Record("user-1", b"y" * (1024 * 1024 - 7)) for _ in range(12)]
    sizes = [len(c) for c in chunks(big)]
    assert sizes == [5, 5, 2]
    for chunk in chunks(big):
        assert sum(len(r.data) + len(r.partition_key) for r in chunk) <= MAX_CALL_BYTES
