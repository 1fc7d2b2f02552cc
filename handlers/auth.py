"""Accounts and tokens: register, log in, refresh, log out, ``auth`` on a live socket; who am I
and finding a user by name (``me``, ``user_by_username``: REST only, not in ``OPERATIONS``).

Access tokens are short-lived JWTs issued by the gateway's token service. Refresh tokens are
random, stored only as SHA-256 hashes, single use and rotated on every refresh; presenting a
used one revokes its whole family (every token descended from the same login). A family is a
login *session*: its access tokens carry its id (``sid``), so logging out (or a reuse) also
makes the session's access tokens stop working and closes its sockets, before they expire.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Annotated

import msgspec

from handlers.base import Context, Identity, Params, Result, Services, operation
from handlers.errors import (
    FORBIDDEN,
    INVALID_CREDENTIALS,
    INVALID_PARAMS,
    INVALID_REFRESH_TOKEN,
    NOT_FOUND,
    UNAUTHORIZED,
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


RefreshToken = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class RefreshParams(msgspec.Struct, forbid_unknown_fields=False):
    refresh_token: RefreshToken


class LogoutParams(msgspec.Struct, forbid_unknown_fields=False):
    refresh_token: RefreshToken | None = None
    """The session to end; without it, the session of the request's access token."""


class MeParams(Params, tag="me"):
    pass


class UserByUsernameParams(Params, tag="user_by_username"):
    username: str


class AuthParams(Params, tag="auth"):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=8192)]


def hash_token(token: str) -> str:
    """What the store keeps of a token it hands out: its SHA-256, never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


async def _token_pair(services: Services, user_id: str, username: str, family_id: str) -> Result:
    access, expires_in = services.tokens.issue_access_token(user_id, family_id)
    refresh = secrets.token_urlsafe(32)
    await services.store.add_refresh_token(
        hash_token(refresh),
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
    session_id = secrets.token_hex(16)
    pair = await _token_pair(services, user.id, user.username, session_id)
    # A password reset between the check above and the refresh token's write would not see
    # this session (it lists the sessions after setting the password): look again, now that
    # the session is stored, and end it if the password it was opened with is gone.
    now = await services.store.get_user(user.id)
    if now is None or now.password_hash != user.password_hash:
        await _end_session(services, session_id, user.id)
        raise OpError(INVALID_CREDENTIALS, "wrong username or password")
    return pair


async def refresh(services: Services, params: RefreshParams) -> Result:
    use = await services.store.use_refresh_token(hash_token(params.refresh_token), int(time.time()))
    if use.state is RefreshState.REUSED and use.family_id and use.user_id:
        # Someone holds a copy of this login's tokens: end the session everywhere now.
        await _end_session(services, use.family_id, use.user_id)
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


async def _end_session(services: Services, session_id: str, user_id: str) -> None:
    await services.store.revoke_family(session_id)
    if services.sessions is not None:
        await services.sessions.revoke(session_id, user_id)


SESSION_PAGE = 100
"""Sessions read from the store at a time when ending every session of a user."""


async def end_all_sessions(services: Services, user_id: str) -> int:
    """End every login session of the user, each as logout ends one; return how many.

    The count includes sessions logged out before whose refresh token had not expired yet
    (ending one again is harmless).

    A session that can still hold a valid access token has a refresh token that has not
    expired, or has expired within the access-token lifetime: those are the ones listed. Call
    it after changing the password: a login that checked the old one and stores its session
    after this listing ends that session itself (see :func:`login`).
    """
    since = int(time.time()) - services.limits.access_token_ttl
    ended = 0
    after: str | None = None
    while True:
        page = await services.store.list_sessions(
            user_id, since=since, limit=SESSION_PAGE, after=after
        )
        for session_id in page:
            await _end_session(services, session_id, user_id)
        ended += len(page)
        if len(page) < SESSION_PAGE:
            return ended
        after = page[-1]


async def logout(services: Services, params: LogoutParams, identity: Identity | None) -> Result:
    """End a login session: its refresh tokens, its access tokens and its sockets.

    The session is the refresh token's when one is given (the access token may have expired
    by then), else the access token's. Logging out twice is harmless.
    """
    if params.refresh_token is not None:
        use = await services.store.use_refresh_token(
            hash_token(params.refresh_token), int(time.time())
        )
        if use.family_id is None or use.user_id is None:
            raise OpError(INVALID_REFRESH_TOKEN, "unknown refresh token")
        session_id, user_id = use.family_id, use.user_id
    elif identity is not None:
        if identity.session_id is None:
            raise OpError(
                INVALID_PARAMS, "this access token has no session; log out with the refresh token"
            )
        session_id, user_id = identity.session_id, identity.user_id
    else:
        raise OpError(UNAUTHORIZED, "log out with an access token or a refresh token")
    await _end_session(services, session_id, user_id)
    return {"logged_out": True}


@operation(MeParams)
async def me(ctx: Context, params: MeParams) -> Result:
    """Who the caller is (``username`` is None when the account is gone)."""
    user = await ctx.services.store.get_user(ctx.user_id)
    return {"user_id": ctx.user_id, "username": user.username if user else None}


@operation(UserByUsernameParams)
async def user_by_username(ctx: Context, params: UserByUsernameParams) -> Result:
    """Find a user by name."""
    user = await ctx.services.store.get_user_by_username(params.username)
    if user is None:
        raise OpError(NOT_FOUND, f"no user named {params.username[:64]!r}")
    return {"user_id": user.id, "username": user.username}


@operation(AuthParams)
async def reauthenticate(ctx: Context, params: AuthParams) -> Result:
    """Move a live socket onto a fresh access token of the same user, so it is not closed
    when the old one expires."""
    session = ctx.require_session()
    identity = ctx.services.tokens.verify(params.token)
    if identity.user_id != ctx.user_id:
        raise OpError(FORBIDDEN, "the token is for another user; open a new connection")
    session.renew(identity)
    return {"user_id": identity.user_id, "expires_at": identity.expires_at}
