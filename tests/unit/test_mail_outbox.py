"""The mail queue: bounded (newest dropped), retried with backoff, drained on shutdown; and the
RFC 5322 files of the default sink."""

from __future__ import annotations

import asyncio
import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

from gateway.mail.files import EmlFiles
from gateway.mail.outbox import WORKERS, MailError, MailQueue, PermanentMailError
from handlers.ports import Mail

SENDER = "Moosic <no-reply@example.com>"


def mail(n: int) -> Mail:
    return Mail("verify_email", f"user{n}@example.com", f"Subject {n}", f"Body {n}\nÜnïcode line\n")


class Recording:
    """A sink that keeps what it is given, failing the first ``failures`` attempts, or
    waiting on ``gate`` before each delivery."""

    def __init__(
        self, *, failures: int = 0, permanent: bool = False, gate: asyncio.Event | None = None
    ) -> None:
        self.failures = failures
        self.permanent = permanent
        self.gate = gate
        self.attempts = 0
        self.started = 0
        self.delivered: list[EmailMessage] = []
        self.opened = self.closed = False

    async def open(self) -> None:
        self.opened = True

    async def close(self) -> None:
        self.closed = True

    async def deliver(self, message: EmailMessage, kind: str) -> None:
        self.started += 1
        if self.gate is not None:
            await self.gate.wait()
        self.attempts += 1
        if self.attempts <= self.failures:
            if self.permanent:
                raise PermanentMailError("refused")
            raise MailError("try again")
        self.delivered.append(message)


async def drained(queue: MailQueue) -> None:
    await queue.close(5.0)


async def test_a_failing_delivery_is_retried_until_it_succeeds() -> None:
    sink = Recording(failures=2)
    queue = MailQueue(sink, sender=SENDER, capacity=10, retries=3, retry_backoff=0.001)
    await queue.start()

    assert queue.send(mail(1))
    await drained(queue)

    assert sink.attempts == 3
    assert [m["To"] for m in sink.delivered] == ["user1@example.com"]
    stats = queue.stats
    assert (stats.queued, stats.sent, stats.retried, stats.failed) == (1, 1, 2, 0)
    assert sink.opened
    assert sink.closed


async def test_after_the_last_retry_the_mail_is_counted_failed() -> None:
    sink = Recording(failures=100)
    queue = MailQueue(sink, sender=SENDER, capacity=10, retries=2, retry_backoff=0.001)
    await queue.start()

    queue.send(mail(1))
    await drained(queue)

    assert sink.attempts == 3  # the first attempt and two retries
    assert (queue.stats.sent, queue.stats.failed, queue.stats.retried) == (0, 1, 2)


async def test_a_permanent_refusal_is_not_retried() -> None:
    sink = Recording(failures=1, permanent=True)
    queue = MailQueue(sink, sender=SENDER, capacity=10, retries=5, retry_backoff=0.001)
    await queue.start()

    queue.send(mail(1))
    queue.send(mail(2))
    await drained(queue)

    assert sink.attempts == 2
    assert [m["To"] for m in sink.delivered] == ["user2@example.com"]
    assert (queue.stats.failed, queue.stats.retried, queue.stats.sent) == (1, 0, 1)


async def test_a_full_queue_drops_the_newest_mail_and_shutdown_counts_what_is_left() -> None:
    gate = asyncio.Event()
    sink = Recording(gate=gate)
    queue = MailQueue(sink, sender=SENDER, capacity=2, retries=0, retry_backoff=0.001)
    await queue.start()
    for n in range(WORKERS):
        assert queue.send(mail(n))
    async with asyncio.timeout(5):
        while sink.started < WORKERS:  # every worker holds one mail, waiting on the sink
            await asyncio.sleep(0.001)

    accepted = [queue.send(mail(10 + n)) for n in range(3)]

    assert accepted == [True, True, False]
    assert (queue.waiting, queue.stats.dropped) == (2, 1)
    # Shutdown with the sink still stuck: the queued and the held mails are given up, counted.
    await queue.close(0.05)
    assert queue.stats.dropped == 1 + 2 + WORKERS
    assert not queue.send(mail(99))  # a closed queue takes nothing
    assert queue.stats.dropped == 1 + 2 + WORKERS + 1
    assert queue.stats.sent == 0


async def test_shutdown_delivers_what_is_queued_first() -> None:
    sink = Recording()
    queue = MailQueue(sink, sender=SENDER, capacity=100, retries=0, retry_backoff=0.001)
    await queue.start()
    for n in range(20):
        queue.send(mail(n))

    await queue.close(5.0)

    assert sorted(str(m["To"]) for m in sink.delivered) == sorted(
        f"user{n}@example.com" for n in range(20)
    )
    assert queue.stats.dropped == 0


async def test_the_file_sink_writes_one_rfc_5322_message_per_mail(tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    queue = MailQueue(EmlFiles(folder), sender=SENDER, capacity=10, retries=0, retry_backoff=1)
    await queue.start()
    assert not folder.exists()  # made with the first message

    queue.send(mail(1))
    queue.send(mail(2))
    await queue.close(5.0)

    files = sorted(folder.iterdir())
    assert len(files) == 2
    assert all(path.suffix == ".eml" and "-verify_email-" in path.name for path in files)
    raw = files[0].read_bytes()
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF line ends only
    parsed = [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default) for path in files
    ]
    assert sorted(str(m["To"]) for m in parsed) == ["user1@example.com", "user2@example.com"]
    first = next(m for m in parsed if m["To"] == "user1@example.com")
    assert isinstance(first, EmailMessage)
    assert (first["From"], first["Subject"]) == (SENDER, "Subject 1")
    assert first["Message-ID"].endswith("@example.com>")
    assert first["Auto-Submitted"] == "auto-generated"
    assert first["Date"] is not None
    assert first.get_content_type() == "text/plain"
    assert first.get_content_charset() == "utf-8"
    assert first.get_content().replace("\r\n", "\n") == "Body 1\nÜnïcode line\n"
