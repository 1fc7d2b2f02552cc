"""The node's outgoing mail: a bounded queue, drained by a few background tasks, with retries.

:meth:`MailQueue.send` never waits: it puts the mail on the queue, or, when the queue holds
``MOOSIC_MAIL_QUEUE`` mails already, drops it (newest dropped: what is queued was accepted
first), counts it in ``moosic_mail_dropped_total`` and logs a warning. The caller's answer does
not change (a reset request says the same either way); the user asks again.

:data:`WORKERS` tasks take mails in order and deliver each through the sink. A failed attempt
is retried ``MOOSIC_MAIL_RETRIES`` times after a capped exponential backoff with full jitter
(``MOOSIC_MAIL_RETRY_BACKOFF`` doubled each time, at most :data:`MAX_BACKOFF`); a
:class:`PermanentMailError` (the provider refused the message itself) is not retried. A mail
that still fails is logged and counted (``moosic_mail_failed_total``) and dropped: the tokens
in it are short-lived, so a fresh request is the remedy. Logs name the kind of mail and the
recipient's domain, never the address or the token.

On shutdown the queue stops taking mail and is drained for at most the shutdown timeout;
whatever is left, queued or being delivered, is counted as dropped (the queue is in memory: a
crashed node loses it, uncounted).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from gateway.mail.message import compose
from handlers.ports import Mail
from storage.dynamodb.retry import RetryPolicy

log = logging.getLogger(__name__)

WORKERS = 2
"""Mails delivered at once per node (one slow retry does not hold up every other mail)."""
MAX_BACKOFF = 60.0
"""No wait between two attempts of one mail is longer than this (seconds)."""


class MailError(Exception):
    """A delivery attempt failed (the provider, the network, the disk): worth retrying."""


class PermanentMailError(MailError):
    """The provider refused the message itself: sending it again cannot help."""


class MailSink(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def deliver(self, message: EmailMessage, kind: str) -> None:
        """Deliver one message or raise :class:`MailError` (:class:`PermanentMailError` when
        retrying is useless)."""
        ...


@dataclass(slots=True)
class MailStats:
    queued: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    dropped: int = 0
    """Refused because the queue was full, or still queued when the node stopped."""


def _domain(address: str) -> str:
    return address.rpartition("@")[2] or "?"


class MailQueue:
    """:class:`handlers.ports.Mailer`: see the module docstring."""

    def __init__(
        self,
        sink: MailSink,
        *,
        sender: str,
        capacity: int,
        retries: int,
        retry_backoff: float,
    ) -> None:
        self.sink = sink
        self.sender = sender
        self.stats = MailStats()
        self._queue: asyncio.Queue[Mail] = asyncio.Queue(maxsize=capacity)
        self._policy = RetryPolicy(retries + 1, retry_backoff, MAX_BACKOFF)
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def send(self, mail: Mail) -> bool:
        if self._closing:
            self.stats.dropped += 1
            return False
        try:
            self._queue.put_nowait(mail)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            log.warning("mail queue full: %s mail to @%s dropped", mail.kind, _domain(mail.to))
            return False
        self.stats.queued += 1
        return True

    async def start(self) -> None:
        await self.sink.open()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work(), name=f"mail-{i}") for i in range(WORKERS)]

    async def close(self, timeout: float) -> None:
        """Stop taking mail, deliver what is queued for at most ``timeout`` seconds, stop."""
        self._closing = True
        try:
            async with asyncio.timeout(timeout):
                await self._queue.join()
        except TimeoutError:
            log.warning("%d mails still queued at shutdown; dropped", self._queue.qsize())
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.stats.dropped += self._queue.qsize()
        await self.sink.close()

    async def _work(self) -> None:
        while True:
            mail = await self._queue.get()
            try:
                await self._deliver(mail)
            except asyncio.CancelledError:  # the node stops with this mail unsent
                self.stats.dropped += 1
                raise
            except Exception:  # never lose the worker to one mail
                self.stats.failed += 1
                log.exception("%s mail to @%s could not be built", mail.kind, _domain(mail.to))
            finally:
                self._queue.task_done()

    async def _deliver(self, mail: Mail) -> None:
        message = compose(mail, self.sender, now=time.time())
        attempts = 0
        error: MailError | None = None
        while attempts < self._policy.attempts:
            if attempts:
                self.stats.retried += 1
                await asyncio.sleep(self._policy.delay(attempts - 1))
            attempts += 1
            try:
                await self.sink.deliver(message, mail.kind)
            except PermanentMailError as exc:
                error = exc
                break
            except MailError as exc:
                error = exc
                continue
            self.stats.sent += 1
            return
        self.stats.failed += 1
        log.error(
            "%s mail to @%s failed after %d attempt(s): %s",
            mail.kind,
            _domain(mail.to),
            attempts,
            error,
        )
