"""Ending every session of a user, and the reset request's same answer, on the real SQLite store
with the gateway's real revocation list (no Redis) and a mailer that keeps what it is given."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gateway.auth.revocation import Revocations
from handlers.auth import SESSION_PAGE, Credentials, end_all_sessions, login
from handlers.errors import OpError
from handlers.ports import Mail
from handlers.recovery import RESET_ANSWER, EmailParams, request_password_reset
from storage.base import RefreshState
from tests.handlers.conftest import World


class Outbox:
    """A :class:`handlers.ports.Mailer` that keeps the mail (the gateway's queue is tested in
    tests/unit/test_mail_outbox.py)."""

    def __init__(self) -> None:
        self.sent: list[Mail] = []

    def send(self, mail: Mail) -> bool:
        self.sent.append(mail)
        return True


async def test_every_session_of_the_user_is_ended_page_by_page(world: World) -> None:
    closed: list[tuple[str, str]] = []
    revocations = Revocations(ttl=900, on_revoked=lambda s, u: closed.append((s, u)))
    services = dataclasses.replace(world.services, sessions=revocations)
    now = int(time.time())
    families = [f"fam-{i:04d}" for i in range(2 * SESSION_PAGE + 17)]
    for i, family in enumerate(families):
        await world.store.add_refresh_token(f"tok-{i}", "u1", family, now + 3600)
    await world.store.add_refresh_token("long-gone", "u1", "fam-old", now - 7200)
    await world.store.add_refresh_token("other", "u2", "fam-other", now + 3600)

    ended = await end_all_sessions(services, "u1")

    assert ended == len(families)
    assert sorted(closed) == sorted((f, "u1") for f in families)
    assert all(revocations.is_revoked(f) for f in families)
    assert not revocations.is_revoked("fam-other")
    assert (await world.store.use_refresh_token("tok-0", now)).state is RefreshState.REUSED
    assert (await world.store.use_refresh_token("other", now)).state is RefreshState.OK


async def test_a_reset_request_says_the_same_and_mails_only_a_verified_address(
    world: World,
) -> None:
    outbox = Outbox()
    services = dataclasses.replace(world.services, mailer=outbox)
    verified = await world.user("dara")
    await world.store.set_email(verified, "dara@example.com")
    await world.store.verify_email(verified, "dara@example.com")
    unverified = await world.user("sok")
    await world.store.set_email(unverified, "sok@example.com")

    answers = [
        await request_password_reset(services, EmailParams(address))
        for address in ("nobody@example.com", "sok@example.com", "dara@EXAMPLE.com")
    ]

    assert answers == [RESET_ANSWER] * 3
    assert [(m.kind, m.to) for m in outbox.sent] == [("password_reset", "dara@example.com")]


async def test_without_a_mailer_the_email_routes_are_unavailable(world: World) -> None:
    with pytest.raises(OpError) as refused:
        await request_password_reset(world.services, EmailParams("dara@example.com"))
    assert refused.value.kind.code == "unavailable"


class ResetDuringLogin:
    """A password hasher whose ``verify`` lets a password reset run right after the check: the
    interleaving in which a login holds the old password's verdict while the reset lists the
    sessions (made deterministic, on the real store and revocation list)."""

    def __init__(self, inner: Any, reset: Callable[[], Awaitable[None]]) -> None:
        self.inner = inner
        self.reset = reset

    async def hash(self, password: str) -> str:
        return await self.inner.hash(password)  # type: ignore[no-any-return]

    async def verify(self, password: str, encoded: str | None) -> bool:
        ok = await self.inner.verify(password, encoded)
        await self.reset()
        return ok  # type: ignore[no-any-return]


async def test_a_login_that_raced_a_reset_ends_its_own_session(world: World) -> None:
    revocations = Revocations(ttl=900, on_revoked=lambda s, u: None)
    hasher = world.services.passwords
    user = await world.store.create_user("dara", await hasher.hash("the old password"))
    services = dataclasses.replace(world.services, sessions=revocations)

    async def reset() -> None:
        await world.store.set_password(user.id, await hasher.hash("the new password"))
        assert await end_all_sessions(services, user.id) == 0  # the login's is not stored yet

    racing = dataclasses.replace(services, passwords=ResetDuringLogin(hasher, reset))

    with pytest.raises(OpError) as refused:
        await login(racing, Credentials("dara", "the old password"))

    assert refused.value.kind.code == "invalid_credentials"
    (session,) = await world.store.list_sessions(user.id, since=0, limit=10)
    assert revocations.is_revoked(session)
    # Without a race the new password logs in, and its session stays.
    pair = await login(services, Credentials("dara", "the new password"))
    assert not revocations.is_revoked(world.tokens.verify(pair["access_token"]).session_id or "")
