"""Email verification and password reset over REST, against the real app and its file mail sink.

Each mail is read back from the ``.eml`` files the gateway wrote (parsed with the standard
library's ``email`` package) and its token taken from it, as a user would. The last test runs
two gateway processes sharing Redis: a reset on one node closes a socket on the other.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from gateway.mail.service import MAIL
from gateway.settings import Settings
from handlers.auth import hash_token
from handlers.recovery import PASSWORD_RESET, RESET_ANSWER, password_fingerprint
from tests.integration.test_abuse import closed_with, login
from tests.support.clients import PASSWORD, TIMEOUT, WsClient, bearer, register
from tests.support.servers import GatewayNode, SharedRedis, node_env

NEW_PASSWORD = "a much better passphrase"
TOKEN = re.compile(r"^Token: (\S+)\s*$", re.MULTILINE)


def mails(folder: Path) -> list[EmailMessage]:
    """Every message the file sink wrote, oldest first."""
    found = []
    for path in sorted(folder.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


async def next_mail(folder: Path, seen: int) -> EmailMessage:
    """Wait for the message after the first ``seen`` ones."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            written = mails(folder)
            if len(written) > seen:
                assert len(written) == seen + 1, "one mail expected"
                return written[seen]
            await asyncio.sleep(0.02)


def token_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    found = TOKEN.search(body.get_content())
    assert found is not None, body.get_content()
    return found.group(1)


async def post(client: Any, path: str, body: dict[str, Any], **headers: str) -> tuple[int, Any]:
    async with client.post(path, json=body, headers=headers) as r:
        return r.status, await r.json()


@pytest.fixture
def mail_dir(settings: Settings) -> Path:
    return Path(settings.mail.mail_dir)


async def verified_account(
    client: Any, mail_dir: Path, username: str, address: str
) -> dict[str, Any]:
    """Register ``username`` and give it ``address``, verified through the mailed token."""
    account = await register(client, username)
    seen = len(mails(mail_dir))
    status, body = await post(client, "/v1/account/email", {"email": address}, **bearer(account))
    assert (status, body["verified"], body["verification_sent"]) == (202, False, True)
    token = token_of(await next_mail(mail_dir, seen))
    status, body = await post(client, "/v1/account/email/verify", {"token": token})
    assert (status, body) == (
        200,
        {"user_id": account["user_id"], "email": body["email"], "verified": True},
    )
    return account


# -- email verification ---------------------------------------------------------------------


async def test_an_address_is_verified_with_the_mailed_token(client: Any, mail_dir: Path) -> None:
    account = await register(client, "dara")

    status, body = await post(
        client, "/v1/account/email", {"email": "Dara.K@Example.COM"}, **bearer(account)
    )

    assert (status, body) == (
        202,
        {"email": "Dara.K@example.com", "verified": False, "verification_sent": True},
    )
    message = await next_mail(mail_dir, 0)
    assert message["To"] == "Dara.K@example.com"
    assert message["From"] == Settings().mail.mail_from
    assert message["Subject"] == "Confirm your email address"
    assert message["Message-ID"].startswith("<")
    assert message["Date"].datetime.timestamp() == pytest.approx(time.time(), abs=60)
    token = token_of(message)
    assert len(token) == 43  # 32 random bytes, URL-safe base64
    # The store keeps the hash only: the token appears nowhere in the database file.
    database = Path(_db(client))
    files = (database, database.with_name(database.name + "-wal"))
    stored = b"".join([await asyncio.to_thread(path.read_bytes) for path in files])
    assert token.encode() not in stored
    assert hash_token(token).encode() in stored

    status, body = await post(client, "/v1/account/email/verify", {"token": token})

    assert (status, body) == (
        200,
        {"user_id": account["user_id"], "email": "Dara.K@example.com", "verified": True},
    )
    status, body = await post(client, "/v1/account/email/verify", {"token": token})
    assert (status, body["code"]) == (410, "email_token_used")
    status, body = await post(client, "/v1/account/email/verify", {"token": "x" * 43})
    assert (status, body["code"]) == (401, "invalid_email_token")
    # The verified address again: nothing to verify, no mail.
    status, body = await post(
        client, "/v1/account/email", {"email": "Dara.K@example.com"}, **bearer(account)
    )
    assert (status, body["verified"], body["verification_sent"]) == (202, True, False)
    assert len(mails(mail_dir)) == 1


def _db(client: Any) -> str:
    from gateway.keys import SETTINGS

    return client.server.app[SETTINGS].storage.sqlite_path  # type: ignore[no-any-return]


async def test_addresses_are_validated_and_one_account_verifies_each(
    client: Any, mail_dir: Path
) -> None:
    await verified_account(client, mail_dir, "dara", "dara@example.com")
    other = await register(client, "sok")
    # The rule itself is tested in tests/unit/test_email_rules.py.
    for bad in ["no-at-sign", "dara@[127.0.0.1]"]:
        status, body = await post(client, "/v1/account/email", {"email": bad}, **bearer(other))
        assert (status, body["code"]) == (400, "invalid_email"), bad

    status, body = await post(
        client, "/v1/account/email", {"email": "dara@EXAMPLE.com"}, **bearer(other)
    )

    assert (status, body["code"]) == (409, "email_taken")
    async with client.post("/v1/account/email", json={"email": "x@example.com"}) as r:
        assert (r.status, (await r.json())["code"]) == (401, "unauthorized")


# -- password reset -------------------------------------------------------------------------


async def test_a_reset_ends_every_session_and_its_token_works_once(
    client: Any, mail_dir: Path
) -> None:
    account = await verified_account(client, mail_dir, "dara", "dara@example.com")
    async with await login(client, "dara") as r:
        second = await r.json()
    ws = await client.ws_connect("/ws", headers=bearer(account))
    ws_second = await client.ws_connect("/ws", headers=bearer(second))
    await WsClient(ws).result("subscribe", channel="room:lobby")
    assert "ts" in await WsClient(ws_second).result("ping")
    seen = len(mails(mail_dir))

    status, body = await post(client, "/v1/auth/password-reset", {"email": "dara@Example.com"})

    assert (status, body) == (202, RESET_ANSWER)
    message = await next_mail(mail_dir, seen)
    assert (message["To"], message["Subject"]) == ("dara@example.com", "Reset your password")
    token = token_of(message)

    status, body = await post(
        client, "/v1/auth/password-reset/confirm", {"token": token, "new_password": NEW_PASSWORD}
    )

    assert (status, body) == (200, {"password_reset": True, "sessions_ended": 2})
    assert await closed_with(ws) == 4501
    assert await closed_with(ws_second) == 4501
    for old in (account, second):
        status, body = await post(
            client, "/v1/auth/refresh", {"refresh_token": old["refresh_token"]}
        )
        assert (status, body["code"]) == (401, "invalid_refresh_token")
        async with client.get("/v1/me", headers=bearer(old)) as r:
            assert (r.status, (await r.json())["code"]) == (401, "session_revoked")
    async with await login(client, "dara") as r:
        assert (r.status, (await r.json())["code"]) == (401, "invalid_credentials")
    async with await login(client, "dara", NEW_PASSWORD) as r:
        assert r.status == 200
        fresh = await r.json()
    async with client.get("/v1/me", headers=bearer(fresh)) as r:
        assert r.status == 200  # the session made after the reset is not touched

    status, body = await post(
        client, "/v1/auth/password-reset/confirm", {"token": token, "new_password": PASSWORD}
    )

    assert (status, body["code"]) == (410, "email_token_used")
    async with await login(client, "dara", NEW_PASSWORD) as r:
        assert r.status == 200  # the refused reuse changed nothing


async def test_expired_unknown_and_superseded_reset_tokens_are_refused(
    client: Any, mail_dir: Path
) -> None:
    account = await verified_account(client, mail_dir, "dara", "dara@example.com")
    store = _store(client)
    # A token that expired a second ago, made the way the handler makes them.
    user = await store.get_user(account["user_id"])
    assert user is not None
    expired = "e" * 43
    await store.add_one_time_token(
        hash_token(expired),
        PASSWORD_RESET,
        user.id,
        password_fingerprint(user.password_hash),
        int(time.time()) - 1,
    )
    confirm = "/v1/auth/password-reset/confirm"

    status, body = await post(client, confirm, {"token": expired, "new_password": NEW_PASSWORD})
    assert (status, body["code"]) == (410, "email_token_expired")
    status, body = await post(client, confirm, {"token": "u" * 43, "new_password": NEW_PASSWORD})
    assert (status, body["code"]) == (401, "invalid_email_token")
    status, body = await post(client, confirm, {"token": "u" * 43, "new_password": "short"})
    assert (status, body["code"]) == (400, "invalid_params")

    # Two reset mails; the first one used: the second was mailed for the old password.
    seen = len(mails(mail_dir))
    tokens = []
    for _ in range(2):
        assert (await post(client, "/v1/auth/password-reset", {"email": "dara@example.com"}))[
            0
        ] == 202
        tokens.append(token_of(await next_mail(mail_dir, seen)))
        seen += 1
    assert (await post(client, confirm, {"token": tokens[0], "new_password": NEW_PASSWORD}))[
        0
    ] == 200

    status, body = await post(client, confirm, {"token": tokens[1], "new_password": "another one!"})

    assert (status, body["code"]) == (410, "email_token_used")
    # A verification token is no reset token.
    status, body = await post(client, "/v1/account/email/verify", {"token": tokens[1]})
    assert (status, body["code"]) == (401, "invalid_email_token")


def _store(client: Any) -> Any:
    from gateway.keys import STORE

    return client.server.app[STORE]


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found is not None, name
    return float(found.group(1))


async def test_the_answer_is_the_same_whether_or_not_the_address_has_an_account(
    client: Any, mail_dir: Path
) -> None:
    await verified_account(client, mail_dir, "dara", "dara@example.com")
    unverified = await register(client, "sok")
    assert (
        await post(client, "/v1/account/email", {"email": "sok@example.com"}, **bearer(unverified))
    )[0] == 202
    await next_mail(mail_dir, 1)
    queue = client.server.app[MAIL]
    queued = queue.stats.queued

    answers = []
    for address in ["nobody@example.com", "sok@example.com", "dara@example.com"]:
        async with client.post("/v1/auth/password-reset", json={"email": address}) as r:
            headers = sorted(h for h in r.headers if h.lower() not in ("date", "x-request-id"))
            answers.append((r.status, await r.read(), headers))

    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == 202
    # Only the verified account's address was mailed.
    assert queue.stats.queued == queued + 1
    message = await next_mail(mail_dir, 2)
    assert message["To"] == "dara@example.com"


async def test_reset_and_email_requests_are_rate_limited_per_address(
    client: Any, mail_dir: Path
) -> None:
    # mail_address: 5 an hour per email address, whether or not it has an account.
    for _ in range(5):
        assert (await post(client, "/v1/auth/password-reset", {"email": "x@example.com"}))[0] == 202

    status, body = await post(client, "/v1/auth/password-reset", {"email": "x@EXAMPLE.com"})

    assert (status, body["code"]) == (429, "rate_limited")
    assert (await post(client, "/v1/auth/password-reset", {"email": "y@example.com"}))[0] == 202
    account = await register(client, "dara")
    status, body = await post(
        client, "/v1/account/email", {"email": "x@example.com"}, **bearer(account)
    )
    assert (status, body["code"]) == (429, "rate_limited")


# -- across nodes -----------------------------------------------------------------------------


@pytest.fixture
def two_nodes(
    shared_redis: SharedRedis, tmp_path: Path
) -> Iterator[tuple[Path, list[GatewayNode]]]:
    env = node_env(shared_redis, tmp_path)
    nodes = [GatewayNode(env, tmp_path / f"{name}.log").start() for name in ("a", "b")]
    try:
        yield Path(env["MOOSIC_MAIL_DIR"]), nodes
    finally:
        for node in nodes:
            node.stop()


async def test_a_reset_on_one_node_closes_the_sockets_on_every_node(
    two_nodes: tuple[Path, list[GatewayNode]], http: Any
) -> None:
    mail_dir, (a, b) = two_nodes
    account = await register(http, "dara", base=a.base_url)
    seen = len(mails(mail_dir))
    status, _ = await post(
        http, a.base_url + "/v1/account/email", {"email": "dara@example.com"}, **bearer(account)
    )
    assert status == 202
    verify = token_of(await next_mail(mail_dir, seen))
    assert (await post(http, b.base_url + "/v1/account/email/verify", {"token": verify}))[0] == 200
    ws_b = await http.ws_connect(b.base_url + "/ws", headers=bearer(account))
    assert "ts" in await WsClient(ws_b).result("ping")

    assert (
        await post(http, a.base_url + "/v1/auth/password-reset", {"email": "dara@example.com"})
    )[0] == 202
    reset = token_of(await next_mail(mail_dir, seen + 1))
    status, body = await post(
        http,
        a.base_url + "/v1/auth/password-reset/confirm",
        {"token": reset, "new_password": NEW_PASSWORD},
    )

    assert (status, body["sessions_ended"]) == (200, 1)
    assert await closed_with(ws_b) == 4501  # closed by the node that did not take the reset
    status, body = await post(
        http, b.base_url + "/v1/auth/refresh", {"refresh_token": account["refresh_token"]}
    )
    assert (status, body["code"]) == (401, "invalid_refresh_token")
    async with asyncio.timeout(TIMEOUT):
        while True:  # the other node learns the revocation from the stream within about a second
            async with http.get(b.base_url + "/v1/me", headers=bearer(account)) as r:
                if r.status == 401:
                    assert (await r.json())["code"] == "session_revoked"
                    break
            await asyncio.sleep(0.05)
