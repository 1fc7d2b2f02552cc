"""One node's mail: the sink settings choose and the queue; the app's cleanup context.

``setup(app)`` returns the :class:`gateway.mail.outbox.MailQueue` handlers get as
``Services.mailer`` and adds a cleanup context that opens the sink and starts delivery with
the app, and drains the queue (bounded by ``MOOSIC_SHUTDOWN_TIMEOUT``) when it stops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from gateway.mail.files import EmlFiles
from gateway.mail.outbox import MailQueue, MailSink
from gateway.mail.ses import SesSink
from gateway.metrics import Metrics
from gateway.settings import Settings


def build_sink(settings: Settings, *, session: Any = None) -> MailSink:
    if settings.mail.mail_sink == "ses":
        return SesSink(
            sender=settings.mail.mail_from,
            region=settings.mail.ses_region,
            endpoint_url=settings.mail.ses_endpoint,
            session=session,
        )
    return EmlFiles(settings.mail.mail_dir)


def build_queue(settings: Settings, metrics: Metrics, *, sink: MailSink | None = None) -> MailQueue:
    queue = MailQueue(
        sink or build_sink(settings),
        sender=settings.mail.mail_from,
        capacity=settings.mail.mail_queue,
        retries=settings.mail.mail_retries,
        retry_backoff=settings.mail.mail_retry_backoff,
    )
    stats = queue.stats
    metrics.counters["mail_queued"] = lambda: stats.queued
    metrics.counters["mail_sent"] = lambda: stats.sent
    metrics.counters["mail_retried"] = lambda: stats.retried
    metrics.counters["mail_failed"] = lambda: stats.failed
    metrics.counters["mail_dropped"] = lambda: stats.dropped
    metrics.gauges["mail_waiting"] = lambda: queue.waiting
    return queue


MAIL = web.AppKey("mail", MailQueue)


def setup(app: web.Application, settings: Settings, metrics: Metrics) -> MailQueue:
    """Give the app a mail queue, started and drained with it."""
    queue = build_queue(settings, metrics)
    app[MAIL] = queue

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        await queue.start()
        yield
        await queue.close(settings.server.shutdown_timeout)

    app.cleanup_ctx.append(lifetime)
    return queue
