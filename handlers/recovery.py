"""An email address on the account, its verification, and password reset by email.

Tokens mailed to users are 32 random bytes (``secrets.token_urlsafe``), kept by the store only
as their SHA-256 (:func:`handlers.auth.hash_token`), used once, and short-lived: a day for a
verification (``MOOSIC_EMAIL_TOKEN_TTL``), 30 minutes for a reset (``MOOSIC_RESET_TOKEN_TTL``).
A reset token also names a fingerprint of the password it replaces, so any password change
(another reset included) makes every reset token mailed before it useless.

A reset request answers the same (``202``, the same body) whether or not the address belongs to
an account, and does comparable work either way: the same token is made and hashed, the same
lookup runs, and the store is written (the token kept) or asked (the unused token looked up)
in one round trip; the mail itself is queued, never sent on the request's path. Only verified
addresses receive reset mail. Using a reset token sets the password (the rules of ``register``)
and ends every session of the account (:func:`handlers.auth.end_all_sessions`): refresh tokens
refused, access tokens refused and sockets closed (4501) on every node.

Addresses (:func:`normalise_email`, :data:`EMAIL_PATTERN`): at most 254 characters;
``local@domain`` with one ``@``; the local part 1-64 characters of the RFC 5322 dot-atom
(letters, digits and ``!#$%&'*+/=?^_`{|}~-``, dots between them, never two in a row, first or
last); the domain at least two dot-separated labels of letters, digits and inner hyphens (1-63
each), the last one starting with a letter. Quoted local parts, address literals and non-ASCII
addresses are refused (an internationalised domain is accepted in its ``xn--`` form). The
domain is lowercased; the local part is kept as given (RFC 5321 lets a mail server tell its
case apart).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from typing import Annotated

import msgspec

from handlers.auth import Password, end_all_sessions, hash_token
from handlers.base import Result, Services
from handlers.errors import (
    EMAIL_TAKEN,
    EMAIL_TOKEN_EXPIRED,
    EMAIL_TOKEN_USED,
    INVALID_EMAIL,
    INVALID_EMAIL_TOKEN,
    UNAUTHORIZED,
    UNAVAILABLE,
    OpError,
)
from handlers.ports import Mail
from storage.base import OneTimeState, OneTimeUse
from storage.errors import Conflict

VERIFY_EMAIL = "verify_email"
PASSWORD_RESET = "password_reset"

MAX_EMAIL_LENGTH = 254
_ATOM = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TOP_LABEL = "[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = rf"[{_ATOM}](?:[.{_ATOM}]{{0,62}}[{_ATOM}])?@(?:{_LABEL}\.)+{_TOP_LABEL}"
EMAIL_PATTERN = f"^{_ADDRESS}$"
"""The address rule as a regular expression (ECMA and Python alike), plus: no ``..`` and at
most :data:`MAX_EMAIL_LENGTH` characters. The OpenAPI document states all three."""
_ADDRESS_RE = re.compile(_ADDRESS)

EmailText = Annotated[str, msgspec.Meta(min_length=1, max_length=320)]
"""Longer than an address may be, so a too-long one gets ``invalid_email``, not a type error."""
MailedToken = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class EmailParams(msgspec.Struct, forbid_unknown_fields=False):
    email: EmailText


class TokenParams(msgspec.Struct, forbid_unknown_fields=False):
    token: MailedToken


class ResetConfirmParams(msgspec.Struct, forbid_unknown_fields=False):
    token: MailedToken
    new_password: Password


def normalise_email(text: str) -> str:
    """Return the address with its domain lowercased, or raise ``invalid_email``."""
    if len(text) > MAX_EMAIL_LENGTH or ".." in text or not _ADDRESS_RE.fullmatch(text):
        raise OpError(INVALID_EMAIL, "not an email address this service accepts")
    local, _, domain = text.rpartition("@")
    return f"{local}@{domain.lower()}"


def address_subject(email: str) -> str:
    """What rate limits count an address by: its SHA-256, so Redis keys hold no address."""
    return hashlib.sha256(b"moosic-address:" + email.encode()).hexdigest()[:32]


def password_fingerprint(password_hash: str) -> str:
    """What a reset token remembers of the password it may replace (not the hash itself)."""
    return hashlib.sha256(b"moosic-reset:" + password_hash.encode()).hexdigest()[:32]


def _mailer(services: Services) -> None:
    if services.mailer is None:
        raise OpError(UNAVAILABLE, "this gateway sends no mail")


def _expiry_text(seconds: int) -> str:
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour" + ("s" if hours != 1 else "")
    minutes = max(1, seconds // 60)
    return f"{minutes} minute" + ("s" if minutes != 1 else "")


def _refused(use: OneTimeUse) -> OpError:
    if use.state is OneTimeState.USED:
        return OpError(EMAIL_TOKEN_USED, "this token was already used")
    if use.state is OneTimeState.EXPIRED:
        return OpError(EMAIL_TOKEN_EXPIRED, "this token has expired; ask for a new one")
    return OpError(INVALID_EMAIL_TOKEN, "unknown token")


# -- the account's address -------------------------------------------------------------------


async def set_email(services: Services, params: EmailParams, user_id: str) -> Result:
    """Give the account an address, unverified, and mail it a verification token."""
    _mailer(services)
    email = normalise_email(params.email)
    try:
        user = await services.store.set_email(user_id, email)
    except Conflict:
        raise OpError(EMAIL_TAKEN, "another account has verified this address") from None
    if user is None:
        raise OpError(UNAUTHORIZED, "the account no longer exists")
    if user.email_verified:  # the same address again: nothing to verify
        return {"email": email, "verified": True, "verification_sent": False}
    token = secrets.token_urlsafe(32)
    ttl = services.limits.email_token_ttl
    await services.store.add_one_time_token(
        hash_token(token), VERIFY_EMAIL, user_id, email, int(time.time()) + ttl
    )
    text = (
        f"Hello {user.username},\n\n"
        f"to confirm that {email} is your address on Moosic, use this token within "
        f"{_expiry_text(ttl)}:\n\n"
        f"Token: {token}\n\n"
        "If you did not ask for this, ignore this message: the address stays unverified.\n"
    )
    assert services.mailer is not None
    queued = services.mailer.send(Mail(VERIFY_EMAIL, email, "Confirm your email address", text))
    return {"email": email, "verified": False, "verification_sent": queued}


async def verify_email(services: Services, params: TokenParams) -> Result:
    """Mark the address a verification token was mailed to as verified."""
    use = await services.store.use_one_time_token(
        hash_token(params.token), VERIFY_EMAIL, int(time.time())
    )
    if use.state is not OneTimeState.OK or use.user_id is None or use.subject is None:
        raise _refused(use)
    try:
        user = await services.store.verify_email(use.user_id, use.subject)
    except Conflict:
        raise OpError(EMAIL_TAKEN, "another account has verified this address") from None
    if user is None:
        raise OpError(INVALID_EMAIL_TOKEN, "the account's address changed since this was sent")
    return {"user_id": user.id, "email": use.subject, "verified": True}


# -- password reset --------------------------------------------------------------------------

RESET_ANSWER: Result = {
    "accepted": True,
    "detail": "if the address belongs to a verified account, a reset token is on its way",
}


async def request_password_reset(services: Services, params: EmailParams) -> Result:
    """Mail a reset token to the address if it is an account's verified one; say the same
    either way (see the module docstring)."""
    _mailer(services)
    email = normalise_email(params.email)
    token = secrets.token_urlsafe(32)
    token_hash = hash_token(token)
    now = int(time.time())
    user = await services.store.get_user_by_email(email)
    if user is None:
        # The round trip a known address spends keeping its token: ask for this unused one.
        await services.store.use_one_time_token(token_hash, PASSWORD_RESET, now)
        return dict(RESET_ANSWER)
    ttl = services.limits.reset_token_ttl
    await services.store.add_one_time_token(
        token_hash, PASSWORD_RESET, user.id, password_fingerprint(user.password_hash), now + ttl
    )
    text = (
        f"Hello {user.username},\n\n"
        f"someone asked to reset the password of your Moosic account. To choose a new one, "
        f"use this token within {_expiry_text(ttl)}:\n\n"
        f"Token: {token}\n\n"
        "Setting a new password signs you out everywhere. If you did not ask for this, "
        "ignore this message: your password stays as it is.\n"
    )
    assert services.mailer is not None
    services.mailer.send(Mail(PASSWORD_RESET, email, "Reset your password", text))
    return dict(RESET_ANSWER)


async def confirm_password_reset(services: Services, params: ResetConfirmParams) -> Result:
    """Set a new password with a mailed reset token, then end every session of the account."""
    use = await services.store.use_one_time_token(
        hash_token(params.token), PASSWORD_RESET, int(time.time())
    )
    if use.state is not OneTimeState.OK or use.user_id is None:
        raise _refused(use)
    user = await services.store.get_user(use.user_id)
    if user is None:
        raise OpError(INVALID_EMAIL_TOKEN, "the account no longer exists")
    if not secrets.compare_digest(password_fingerprint(user.password_hash), use.subject or ""):
        raise OpError(EMAIL_TOKEN_USED, "the password changed since this token was sent")
    password_hash = await services.passwords.hash(params.new_password)
    if not await services.store.set_password(user.id, password_hash):
        raise OpError(INVALID_EMAIL_TOKEN, "the account no longer exists")
    ended = await end_all_sessions(services, user.id)
    return {"password_reset": True, "sessions_ended": ended}
