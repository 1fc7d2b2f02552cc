"""Amazon SES as a mail sink: ``SendRawEmail`` through aioboto3 (``MOOSIC_MAIL_SINK=ses``).

The sender (``MOOSIC_MAIL_FROM``) must be an identity SES has verified. botocore's own retries
are off: the outbox retries, with its backoff. Errors SES gives for the message itself
(rejected, bad parameters, an unverified sender) are permanent and not retried; throttling,
server errors, time-outs and lost connections are.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from gateway.aws import AwsSink
from gateway.mail.message import to_bytes
from gateway.mail.outbox import MailError, PermanentMailError

PERMANENT_CODES = frozenset(
    {
        "MessageRejected",
        "MailFromDomainNotVerifiedException",
        "MailFromDomainNotVerified",
        "ConfigurationSetDoesNotExist",
        "InvalidParameterValue",
        "AccountSendingPausedException",
    }
)


class SesSink(AwsSink):
    """:class:`gateway.mail.outbox.MailSink` on SES."""

    def __init__(
        self,
        *,
        sender: str,
        region: str,
        endpoint_url: str | None,
        session: Any = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(
            "ses",
            region=region,
            endpoint_url=endpoint_url,
            session=session,
            connect_timeout=timeout,
            read_timeout=timeout,
        )
        self.sender = sender

    async def deliver(self, message: EmailMessage, kind: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        if self._client is None:
            raise MailError("the SES sink is not open")
        try:
            await self._client.send_raw_email(
                Source=self.sender,
                Destinations=[str(message["To"])],
                RawMessage={"Data": to_bytes(message)},
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in PERMANENT_CODES:
                raise PermanentMailError(f"SES refused the message: {code}") from exc
            raise MailError(f"SES: {code or exc}") from exc
        except (BotoCoreError, OSError, TimeoutError) as exc:
            raise MailError(f"SES: {type(exc).__name__}: {exc}") from exc
