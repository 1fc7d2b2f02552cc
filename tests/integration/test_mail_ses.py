"""Mail through SES: a real moto server over HTTP stands in for SES; what it was sent is read
back from moto's own API (``/moto-api/data.json``), nothing in-process is patched."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import uuid
from email.message import EmailMessage
from typing import Any

import aioboto3
import aiohttp
import pytest

from gateway.mail.outbox import MailQueue
from gateway.mail.ses import SesSink
from handlers.ports import Mail
from tests.support.clients import TIMEOUT, bearer, register
from tests.support.moto_server import ACCESS_KEY, REGION, SECRET_KEY, MotoServer

SENDER = "Moosic <no-reply@moosic.example>"
TOKEN = re.compile(r"^Token: (\S+)\s*$", re.MULTILINE)


@pytest.fixture
def session() -> aioboto3.Session:
    return aioboto3.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    )


@pytest.fixture
async def verified_sender(moto_server: MotoServer, session: aioboto3.Session) -> str:
    """SES sends only from verified identities: verify the sender, as an operator would."""
    async with session.client("ses", endpoint_url=moto_server.url) as ses:
        await ses.verify_email_identity(EmailAddress="no-reply@moosic.example")
    return SENDER


async def sent_to(moto_server: MotoServer, address: str) -> list[EmailMessage]:
    """The raw messages moto's SES took for ``address``, parsed."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{moto_server.url}/moto-api/data.json") as r,
    ):
        data = await r.json(content_type=None)
    found = []
    for raw in data.get("ses", {}).get("RawMessage", []):
        if any(address in destination for destination in raw["destinations"]):
            message = email.message_from_string(raw["raw_data"], policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            found.append(message)
    return found


async def wait_sent(moto_server: MotoServer, address: str, count: int = 1) -> list[EmailMessage]:
    async with asyncio.timeout(TIMEOUT):
        while True:
            found = await sent_to(moto_server, address)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.05)


def token_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    found = TOKEN.search(body.get_content())
    assert found is not None
    return found.group(1)


async def test_the_ses_sink_sends_the_raw_message(
    moto_server: MotoServer, session: aioboto3.Session, verified_sender: str
) -> None:
    address = f"u{uuid.uuid4().hex[:8]}@example.com"
    sink = SesSink(
        sender=verified_sender, region=REGION, endpoint_url=moto_server.url, session=session
    )
    queue = MailQueue(sink, sender=verified_sender, capacity=10, retries=2, retry_backoff=0.01)
    await queue.start()

    queue.send(Mail("verify_email", address, "Confirm your email address", "Token: abc\n"))
    await queue.close(10.0)

    (message,) = await sent_to(moto_server, address)
    assert (message["To"], message["From"]) == (address, verified_sender)
    assert message["Subject"] == "Confirm your email address"
    assert token_of(message) == "abc"
    assert (queue.stats.sent, queue.stats.failed, queue.stats.retried) == (1, 0, 0)


async def test_a_message_ses_refuses_is_not_retried(
    moto_server: MotoServer, session: aioboto3.Session
) -> None:
    address = f"u{uuid.uuid4().hex[:8]}@example.com"
    unverified = f"Nobody <nobody-{uuid.uuid4().hex[:8]}@elsewhere.example>"
    sink = SesSink(sender=unverified, region=REGION, endpoint_url=moto_server.url, session=session)
    queue = MailQueue(sink, sender=unverified, capacity=10, retries=3, retry_backoff=0.01)
    await queue.start()

    queue.send(Mail("verify_email", address, "s", "t\n"))
    await queue.close(10.0)

    assert (queue.stats.sent, queue.stats.failed, queue.stats.retried) == (0, 1, 0)
    assert await sent_to(moto_server, address) == []


async def test_an_unreachable_ses_is_retried_then_given_up(session: aioboto3.Session) -> None:
    from tests.support.servers import free_port

    sink = SesSink(
        sender=SENDER,
        region=REGION,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        session=session,
        timeout=1.0,
    )
    queue = MailQueue(sink, sender=SENDER, capacity=10, retries=2, retry_backoff=0.01)
    await queue.start()

    queue.send(Mail("verify_email", "x@example.com", "s", "t\n"))
    await queue.close(20.0)

    assert (queue.stats.sent, queue.stats.failed, queue.stats.retried) == (0, 1, 2)


async def test_verification_and_reset_through_ses(
    make_client: Any,
    moto_server: MotoServer,
    verified_sender: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The gateway's own AWS client reads the default credential chain: the environment here.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    client = await make_client(
        mail_sink="ses", mail_from=verified_sender, ses_region=REGION, ses_endpoint=moto_server.url
    )
    address = f"dara-{uuid.uuid4().hex[:8]}@example.com"
    account = await register(client, "dara")
    async with client.post(
        "/v1/account/email", json={"email": address}, headers=bearer(account)
    ) as r:
        assert r.status == 202
    (verification,) = await wait_sent(moto_server, address)
    async with client.post("/v1/account/email/verify", json={"token": token_of(verification)}) as r:
        assert (r.status, (await r.json())["verified"]) == (200, True)

    async with client.post("/v1/auth/password-reset", json={"email": address}) as r:
        assert r.status == 202
    reset = (await wait_sent(moto_server, address, 2))[1]
    assert reset["Subject"] == "Reset your password"
    async with client.post(
        "/v1/auth/password-reset/confirm",
        json={"token": token_of(reset), "new_password": "a much better passphrase"},
    ) as r:
        assert (r.status, await r.json()) == (200, {"password_reset": True, "sessions_ended": 1})
