"""One node's clickstream: the sink settings choose, the buffer, the intake; app wiring.

``setup(app)`` puts a :class:`Clickstream` under :data:`CLICKSTREAM` and adds its cleanup
context: the buffer starts with the app and, on shutdown (the SIGTERM drain: sockets are told
to go first, then cleanup contexts run in reverse), refuses new events and writes every
buffered one before the sink closes, so nothing acknowledged is lost by a deploy.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.clickstream.buffer import EventBuffer, Sink
from gateway.clickstream.files import FileSink, JsonLines, safe_name
from gateway.clickstream.kinesis import KinesisSink
from gateway.metrics import Metrics
from gateway.settings import Settings
from handlers.events import Intake


def node_name(settings: Settings) -> str:
    """What events name this node by: its host name and port."""
    return f"{socket.gethostname()}:{settings.server.port}"


def build_sink(
    settings: Settings, metrics: Metrics, node: str, *, session: Any = None
) -> FileSink | KinesisSink:
    folder = Path(settings.clickstream.clickstream_dir)
    tag = safe_name(node)

    def files(prefix: str) -> FileSink:
        writer = JsonLines(
            folder,
            f"{prefix}-{tag}",
            max_bytes=settings.clickstream.clickstream_max_file_bytes,
            max_seconds=settings.clickstream.clickstream_rotate_seconds,
        )
        return FileSink(writer, metrics)

    if settings.clickstream.clickstream_sink == "kinesis":
        if not settings.clickstream.clickstream_stream:
            raise ValueError("the kinesis sink needs MOOSIC_CLICKSTREAM_STREAM")
        return KinesisSink(
            settings.clickstream.clickstream_stream,
            region=settings.clickstream.clickstream_kinesis_region,
            endpoint_url=settings.clickstream.clickstream_kinesis_endpoint,
            retries=settings.clickstream.clickstream_retries,
            retry_backoff=settings.clickstream.clickstream_retry_backoff,
            dead_letter=files("dead-letter"),
            metrics=metrics,
            session=session,
        )
    return files("events")


class Clickstream:
    """The buffer, its sink and the intake of one node."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        node: str | None = None,
        sink: Sink | None = None,
        session: Any = None,
    ) -> None:
        self.node = node or node_name(settings)
        self.sink = sink or build_sink(settings, metrics, self.node, session=session)
        self.buffer = EventBuffer(
            self.sink,
            metrics,
            limit=settings.clickstream.clickstream_buffer,
            flush_events=settings.clickstream.clickstream_flush_events,
            interval=settings.clickstream.clickstream_flush_interval,
        )
        self.intake = Intake(
            self.buffer,
            node=self.node,
            region=settings.server.region,
            dedupe_size=settings.clickstream.clickstream_dedupe_size,
        )
        metrics.gauges["clickstream_buffered"] = lambda: self.buffer.buffered
        stats = self.intake.stats
        metrics.counters["clickstream_events_duplicate"] = lambda: stats.duplicates
        metrics.counters["clickstream_events_invalid"] = lambda: stats.invalid

    async def start(self) -> None:
        await self.buffer.start()

    async def close(self) -> None:
        await self.buffer.close()


CLICKSTREAM = web.AppKey("clickstream", Clickstream)


def setup(app: web.Application, settings: Settings, metrics: Metrics) -> Clickstream:
    """Give the app a clickstream, started and drained with it (a cleanup context)."""
    clickstream = Clickstream(settings, metrics)
    app[CLICKSTREAM] = clickstream

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        await clickstream.start()
        yield
        await clickstream.close()

    app.cleanup_ctx.append(lifetime)
    return clickstream
