"""The buffer and the file sink: flushes on size, interval and close; rotation; nothing lost."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from gateway.app import create_app
from gateway.clickstream import service
from gateway.clickstream.buffer import EventBuffer
from gateway.clickstream.files import FileSink, JsonLines
from gateway.keys import METRICS, SETTINGS
from gateway.metrics import Metrics
from gateway.settings import Settings
from handlers.events import Intake, Record
from tests.clickstream.conftest import NOW, event, read_lines
from tests.support.servers import TEST_JWT_SECRET, GatewayNode

WAIT = 30.0


def record(user: str, n: int, pad: int = 0) -> Record:
    line = orjson.dumps({"type": "like", "event_id": f"{user}-{n}", "pad": "x" * pad})
    return Record(user, line + b"\n")


async def wait_for(check: Any) -> None:
    async with asyncio.timeout(WAIT):
        while not check():
            await asyncio.sleep(0.01)


def test_files_rotate_by_size_and_keep_every_line(tmp_path: Path) -> None:
    writer = JsonLines(tmp_path, "events-n", max_bytes=1000, max_seconds=3600)
    lines = [record("u", n, pad=n % 50).data for n in range(300)]
    for start in range(0, 300, 7):
        writer.write(lines[start : start + 7])
    writer.write([b'{"big":"' + b"y" * 2000 + b'"}\n'])
    writer.close()
    assert len(writer.files) > 10
    sizes = [path.stat().st_size for path in writer.files]
    assert all(size <= 1000 for size in sizes[:-1])
    assert sizes[-1] > 2000  # a longer line gets a file of its own
    assert b"".join(path.read_bytes() for path in writer.files) == b"".join(lines) + (
        b'{"big":"' + b"y" * 2000 + b'"}\n'
    )
    assert sorted(writer.files) == writer.files  # names sort in writing order
    assert all(path.name.startswith("events-n-") for path in writer.files)


def test_one_batch_is_split_where_each_file_is_full(tmp_path: Path) -> None:
    """A batch written at once splits into files exactly as line by line would: a file ends
    before the line that would take it past the size, a longer line gets a file of its own."""
    lines = [record("u", n, pad=(n * 37) % 90).data for n in range(400)]
    lines.insert(150, b'{"big":"' + b"y" * 1500 + b'"}\n')
    writer = JsonLines(tmp_path, "events-n", max_bytes=1000, max_seconds=3600)
    writer.write(lines)
    writer.close()
    expected: list[list[bytes]] = []
    size = 0
    for line in lines:  # the rule, one line at a time
        if not expected or (size and size + len(line) > 1000):
            expected.append([])
            size = 0
        expected[-1].append(line)
        size += len(line)
    assert [path.read_bytes() for path in writer.files] == [b"".join(f) for f in expected]
    assert len(expected) > 20


def test_files_rotate_by_age(tmp_path: Path) -> None:
    now = [NOW]
    writer = JsonLines(
        tmp_path, "events-n", max_bytes=1 << 20, max_seconds=60, clock=lambda: now[0]
    )
    writer.write([record("u", 1).data])
    now[0] += 59
    writer.write([record("u", 2).data])
    now[0] += 1
    writer.write([record("u", 3).data, record("u", 4).data])
    writer.close()
    assert [len(path.read_bytes().splitlines()) for path in writer.files] == [2, 2]
    assert "20270115T080000Z" in writer.files[0].name


async def test_the_buffer_flushes_on_size_and_on_interval(tmp_path: Path, metrics: Metrics) -> None:
    folder = tmp_path / "events"
    sink = FileSink(JsonLines(folder, "events-n", max_bytes=1 << 20, max_seconds=3600), metrics)
    by_size = EventBuffer(sink, metrics, limit=100, flush_events=10, interval=3600)
    await by_size.start()
    assert by_size.offer([record("u", n) for n in range(9)]) == 9
    await asyncio.sleep(0.05)
    assert read_lines(folder) == []  # under the size, the hour-long interval holds them
    by_size.offer([record("u", 9)])
    await wait_for(lambda: len(read_lines(folder)) == 10)
    await by_size.close()

    folder2 = tmp_path / "events2"
    sink2 = FileSink(JsonLines(folder2, "events-n", max_bytes=1 << 20, max_seconds=3600), metrics)
    by_time = EventBuffer(sink2, metrics, limit=100, flush_events=100, interval=0.05)
    await by_time.start()
    by_time.offer([record("u", n) for n in range(3)])
    await wait_for(lambda: len(read_lines(folder2)) == 3)
    await wait_for(lambda: by_time.buffered == 0)
    await by_time.close()
    assert metrics.clickstream_events_written == 13


async def test_close_writes_everything_and_refuses_what_comes_after(
    tmp_path: Path, metrics: Metrics
) -> None:
    folder = tmp_path / "events"
    writer = JsonLines(folder, "events-n", max_bytes=2000, max_seconds=3600)
    buffer = EventBuffer(
        FileSink(writer, metrics), metrics, limit=5000, flush_events=64, interval=3600
    )
    await buffer.start()
    offered = [record(f"u{n % 7}", n) for n in range(4321)]
    assert buffer.offer(offered) == 4321
    await buffer.close()
    assert buffer.offer([record("late", 1)]) == 0
    written = read_lines(folder)
    assert [line["event_id"] for line in written] == [f"u{n % 7}-{n}" for n in range(4321)]
    assert len(writer.files) > 1
    assert metrics.clickstream_events_refused_full == 1


async def test_a_failing_sink_keeps_the_events_in_order(tmp_path: Path, metrics: Metrics) -> None:
    folder = tmp_path / "events"
    folder.write_text("a file where the folder should be")
    sink = FileSink(JsonLines(folder, "events-n", max_bytes=1 << 20, max_seconds=3600), metrics)
    buffer = EventBuffer(sink, metrics, limit=10, flush_events=10, interval=0.02)
    buffer._task = asyncio.get_running_loop().create_task(buffer._run())  # no open(): it fails
    assert buffer.offer([record("u", n) for n in range(6)]) == 6
    await wait_for(lambda: metrics.clickstream_flush_failures >= 2)
    assert buffer.buffered == 6
    assert buffer.offer([record("u", n) for n in range(6, 12)]) == 4  # the bound still holds
    assert metrics.clickstream_events_refused_full == 2
    folder.unlink()
    await wait_for(lambda: buffer.buffered == 0)
    await buffer.close()
    assert [line["event_id"] for line in read_lines(folder)] == [f"u-{n}" for n in range(10)]


async def test_the_app_drains_the_buffer_when_it_stops(
    aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    """The gateway's shutdown (what SIGTERM runs) writes every acknowledged event."""
    folder = tmp_path / "clickstream"
    changed = settings.changed(
        clickstream_dir=str(folder),
        clickstream_flush_interval=3600,
        clickstream_flush_events=100_000,
        clickstream_max_file_bytes=4096,
    )
    app = create_app(changed)
    clickstream = service.setup(app, app[SETTINGS], app[METRICS])
    client = await aiohttp_client(app)
    intake: Intake = clickstream.intake
    accepted = 0
    now_ms = int(time.time() * 1000)  # the app's intake runs on the real clock
    for user in range(20):
        batch = [event("view_start", f"e{n}", at=now_ms, video_id=f"v{n}") for n in range(50)]
        accepted += intake.take(f"user{user}", "KH", batch)["accepted"]
    assert accepted == 1000
    metrics_text = await (await client.get("/metrics")).text()
    assert "moosic_clickstream_events_accepted_total 1000" in metrics_text
    assert "moosic_clickstream_buffered 1000" in metrics_text
    assert read_lines(folder) == []
    await client.close()
    lines = read_lines(folder)
    assert sorted((line["user_id"], line["event_id"]) for line in lines) == sorted(
        (f"user{u}", f"e{n}") for u in range(20) for n in range(50)
    )
    assert len(list(folder.glob("events-*.jsonl"))) > 1


class ClickstreamNode(GatewayNode):
    def command(self) -> list[str]:
        return [sys.executable, "-m", "tests.clickstream.node"]


def test_sigterm_loses_nothing_that_was_acknowledged(tmp_path: Path) -> None:
    folder = tmp_path / "clickstream"
    env = {
        "MOOSIC_DEV": "1",
        "MOOSIC_JWT_SECRET": TEST_JWT_SECRET,
        "MOOSIC_SQLITE_PATH": str(tmp_path / "moosic.db"),
        "MOOSIC_MEDIA_DIR": str(tmp_path / "media"),
        "MOOSIC_LOG_LEVEL": "WARNING",
        "MOOSIC_CLICKSTREAM_DIR": str(folder),
        "MOOSIC_CLICKSTREAM_FLUSH_EVENTS": "100000",
        "MOOSIC_CLICKSTREAM_FLUSH_INTERVAL": "60",
        "MOOSIC_CLICKSTREAM_MAX_FILE_BYTES": "65536",
        "CLICKSTREAM_TEST_USERS": "40",
        "CLICKSTREAM_TEST_EVENTS": "4000",
    }
    node = ClickstreamNode(env, tmp_path / "node.log").start()
    try:
        with urllib.request.urlopen(node.base_url + "/metrics", timeout=10) as answer:
            text = answer.read().decode()
        assert "moosic_clickstream_events_accepted_total 4000" in text
        assert "moosic_clickstream_buffered 4000" in text  # acknowledged, none written yet
    finally:
        node.stop(signal.SIGTERM)
    lines = read_lines(folder)
    assert sorted((line["user_id"], line["event_id"]) for line in lines) == sorted(
        (f"user{u}", f"e{n}") for u in range(40) for n in range(100)
    )
    assert len(list(folder.glob("events-*.jsonl"))) > 1  # rotated on the way
