"""Accounts and tokens: register, log in, refresh.

Access tokens are short-lived JWTs issued by the gateway's token service. Refresh tokens are
random, stored only as SHA-256 hashes, single use and rotated on every refresh; presenting a
used one revokes its whole family (every token descended from the same login).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Annotated

import msgspec

from handlers.base import Result, Services
from handlers.errors import (
    INVALID_CREDENTIALS,
    INVALID_REFRESH_TOKEN,
    USERNAME_TAKEN,
    OpError,
)
from storage.base import RefreshState
from storage.errors import Conflict

Username = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_.]{3,32}$")]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=256)]


class Credentials(msgspec.Struct, forbid_unknown_fields=False):
    username: Username
    password: Password


class RefreshParams(msgspec.Struct, forbid_unknown_fields=False):
    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _token_pair(services: Services, user_id: str, username: str, family_id: str) -> Result:
    access, expires_in = services.tokens.issue_access_token(user_id)
    refresh = secrets.token_urlsafe(32)
    await services.store.add_refresh_token(
        _hash_token(refresh),
        user_id,
        family_id,
        int(time.time()) + services.limits.refresh_token_ttl,
    )
    return {
        "user_id": user_id,
        "username": username,
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "refresh_token": refresh,
        "refresh_expires_in": services.limits.refresh_token_ttl,
    }


async def register(services: Services, params: Credentials) -> Result:
    password_hash = await services.passwords.hash(params.password)
    try:
        user = await services.store.create_user(params.username, password_hash)
    except Conflict:
        raise OpError(USERNAME_TAKEN, f"username {params.username!r} is taken") from None
    return await _token_pair(services, user.id, user.username, secrets.token_hex(16))


async def login(services: Services, params: Credentials) -> Result:
    user = await services.store.get_user_by_username(params.username)
    ok = await services.passwords.verify(params.password, user.password_hash if user else None)
    if user is None or not ok:
        raise OpError(INVALID_CREDENTIALS, "wrong username or password")
    return await _token_pair(services, user.id, user.username, secrets.token_hex(16))


async def refresh(services: Services, params: RefreshParams) -> Result:
    use = await services.store.use_refresh_token(
        _hash_token(params.refresh_token), int(time.time())
    )
    if use.state is not RefreshState.OK or use.user_id is None or use.family_id is None:
        reasons = {
            RefreshState.UNKNOWN: "unknown refresh token",
            RefreshState.EXPIRED: "the refresh token has expired; log in again",
            RefreshState.REUSED: "the refresh token was already used; its session is revoked",
        }
        raise OpError(INVALID_REFRESH_TOKEN, reasons.get(use.state, "invalid refresh token"))
    user = await services.store.get_user(use.user_id)
    if user is None:
        raise OpError(INVALID_REFRESH_TOKEN, "the account no longer exists")
    return await _token_pair(services, user.id, user.username, use.family_id)
