"""The RFC 5322 message of one :class:`handlers.ports.Mail`, built with :mod:`email`."""

from __future__ import annotations

from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from handlers.ports import Mail


def compose(mail: Mail, sender: str, *, now: float) -> EmailMessage:
    """A plain-text UTF-8 message from ``sender`` to ``mail.to`` (CRLF line ends: SMTP policy)."""
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
    message["Message-ID"] = make_msgid(domain=_domain(sender))
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(mail.text, charset="utf-8")
    return message


def _domain(sender: str) -> str:
    address = sender.rpartition("<")[2].rstrip(">")
    domain = Address(addr_spec=address).domain if "@" in address else ""
    return domain or "localhost"


def to_bytes(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=SMTP)
