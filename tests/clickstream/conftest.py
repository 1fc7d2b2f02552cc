"""Clickstream fixtures: a buffer on the real file sink in a temporary folder, an intake on it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from gateway.clickstream.buffer import EventBuffer
from gateway.clickstream.files import FileSink, JsonLines
from gateway.metrics import Metrics
from handlers.events import Intake

NOW = 1_800_000_000.0
"""The intake's clock in these tests, seconds since the epoch."""
NOW_MS = int(NOW * 1000)


def event(kind: str, event_id: str, *, at: int = NOW_MS - 1000, **fields: object) -> bytes:
    """One event as a phone sends it (``client_ts`` a second before ``NOW`` unless given)."""
    return orjson.dumps({"type": kind, "event_id": event_id, "client_ts": at, **fields})


def read_lines(folder: Path, pattern: str = "events-*.jsonl") -> list[dict[str, object]]:
    """Every JSON line of the matching files, in file order."""
    lines: list[dict[str, object]] = []
    for path in sorted(folder.glob(pattern)):
        lines += [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return lines


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def file_sink(tmp_path: Path, metrics: Metrics) -> FileSink:
    writer = JsonLines(tmp_path / "events", "events-test", max_bytes=1 << 20, max_seconds=3600)
    return FileSink(writer, metrics)


@pytest.fixture
def buffer(file_sink: FileSink, metrics: Metrics) -> EventBuffer:
    """A buffer that flushes only when told (its interval and size are out of reach)."""
    return EventBuffer(file_sink, metrics, limit=1000, flush_events=1000, interval=3600)


@pytest.fixture
def intake(buffer: EventBuffer) -> Intake:
    return Intake(
        buffer, node="node-a:8080", region="ap-southeast-1", dedupe_size=1000, clock=lambda: NOW
    )
