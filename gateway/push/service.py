"""One node's push: the decider handlers queue messages to, the drainer, the sink; metrics.

:func:`build` makes the :class:`handlers.notify.OfflineNotifier` (``Services.notifier``) and
the :class:`gateway.push.drain.Drainer` with the sink settings choose; the app starts both with
its services and stops them before the store closes (the decider first writes what it holds,
for at most ``MOOSIC_SHUTDOWN_TIMEOUT``).
"""

from __future__ import annotations

from typing import Any

from gateway.metrics import Metrics
from gateway.push.drain import Drainer
from gateway.push.files import JsonLines
from gateway.push.sink import PushSink
from gateway.push.sns import SnsSink
from gateway.settings import Settings
from handlers.base import PresenceView
from handlers.notify import OfflineNotifier
from storage.base import Store


def build_sink(settings: Settings, *, session: Any = None) -> PushSink:
    if settings.push.push_sink == "sns":
        applications = {
            platform: arn
            for platform, arn in (
                ("apns", settings.push.sns_apns_arn),
                ("fcm", settings.push.sns_fcm_arn),
            )
            if arn is not None
        }
        return SnsSink(
            applications=applications,
            region=settings.push.sns_region,
            endpoint_url=settings.push.sns_endpoint,
            session=session,
        )
    return JsonLines(settings.push.push_dir)


def build(
    settings: Settings,
    store: Store,
    presence: PresenceView,
    metrics: Metrics,
    *,
    sink: PushSink | None = None,
) -> tuple[OfflineNotifier, Drainer]:
    notifier = OfflineNotifier(
        store,
        presence,
        delay=settings.push.push_delay,
        max_pending=settings.push.push_max_pending,
        max_group_members=settings.chat.max_group_members,
        capacity=settings.push.push_queue,
    )
    drainer = Drainer(
        store,
        sink or build_sink(settings),
        presence=presence,
        batch=settings.push.push_batch,
        poll=settings.push.push_poll,
        lease=settings.push.push_lease,
        delay=settings.push.push_delay,
        per_minute=settings.push.push_per_minute,
        retries=settings.push.push_retries,
        retry_backoff=settings.push.push_retry_backoff,
        max_age=settings.push.push_max_age,
    )
    decided, drained = notifier.stats, drainer.stats
    metrics.counters["push_decided"] = lambda: decided.decided
    metrics.counters["push_recipients_online"] = lambda: decided.online
    metrics.counters["push_recipients_without_device"] = lambda: decided.no_device
    metrics.counters["push_refused"] = lambda: decided.refused
    metrics.counters["push_decisions_dropped"] = lambda: decided.dropped
    metrics.counters["push_decisions_failed"] = lambda: decided.failed
    metrics.gauges["push_decisions_waiting"] = lambda: notifier.waiting
    metrics.counters["push_claimed"] = lambda: drained.claimed
    metrics.counters["push_sent"] = lambda: drained.sent
    metrics.counters["push_device_sends"] = lambda: drained.device_sends
    metrics.counters["push_device_failures"] = lambda: drained.device_failures
    metrics.counters["push_devices_dropped"] = lambda: drained.devices_dropped
    metrics.counters["push_no_device"] = lambda: drained.no_device
    metrics.counters["push_online_when_due"] = lambda: drained.online
    metrics.counters["push_capped"] = lambda: drained.capped
    metrics.counters["push_retried"] = lambda: drained.retried
    metrics.counters["push_failed"] = lambda: drained.failed
    metrics.counters["push_expired"] = lambda: drained.expired
    metrics.counters["push_errors"] = lambda: drained.errors
    metrics.counters["push_mentions_decided"] = lambda: decided.mentions
    metrics.counters["push_recipients_suppressed"] = lambda: decided.suppressed
    metrics.counters["push_held_for_quiet_hours"] = lambda: decided.held
    metrics.counters["push_suppressed_when_due"] = lambda: drained.suppressed
    metrics.counters["push_quiet_when_due"] = lambda: drained.quiet
    return notifier, drainer
