"""Access tokens: short-lived JWTs; the key id picks the key, and the key fixes the algorithm.

Tokens the gateway issues are HS256, signed with ``MOOSIC_JWT_SECRET`` and carrying its key id
(``kid``, derived from the secret, so rotating needs no bookkeeping). Secrets listed in
``MOOSIC_JWT_PREVIOUS_SECRETS`` still verify (with their own key ids) while the tokens they
signed live out their lifetime: rotate by making the new secret current and the old one
previous, then drop the old one an access-token lifetime later. A token without ``kid`` (issued
before key ids existed) is checked against the current secret only.

With ``MOOSIC_JWKS_URL``, RS256 tokens of an external identity provider are accepted too, with
the keys of its JWKS document (see :mod:`gateway.auth.jwks`) and its own issuer and audience; their
subjects are mapped into their own namespace (``ext-{sub}``), apart from local user ids.

The algorithm comes from the key the ``kid`` names, never from the token: ``alg: none``, HS256
signed with an RSA public key, or any algorithm other than the key's is refused. ``exp``,
``iat``, ``sub``, ``iss`` and ``aud`` are required. A token whose login session (``sid``) was
revoked (logout, refresh-token reuse) is refused with ``session_revoked``.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.auth.jwks import EXTERNAL_SUBJECT_PREFIX, JwksKeys
from handlers.base import Identity, SessionRevoker
from handlers.channels import is_user_id
from handlers.errors import SESSION_REVOKED, TOKEN_EXPIRED, UNAUTHORIZED, OpError

__all__ = ["ALGORITHM", "LEEWAY_SECONDS", "Identity", "TokenService", "key_id"]

ALGORITHM = "HS256"
"""The algorithm of the tokens the gateway issues."""
LEEWAY_SECONDS = 30
"""Clock skew tolerated on ``exp`` and ``iat``."""
MAX_SESSION_ID = 128


def key_id(secret: str) -> str:
    """Return the ``kid`` of an HS256 secret: a short hash, so it names the key without it."""
    digest = hashlib.sha256(b"moosic-jwt-kid\x00" + secret.encode()).digest()
    return base64.urlsafe_b64encode(digest[:9]).decode()


@dataclass(frozen=True, slots=True)
class _Key:
    algorithm: str
    key: Any
    issuer: str
    audience: str
    subject_prefix: str = ""
    """Put before ``sub`` to make the user id (an external provider's namespace)."""


class TokenService:
    """Issue HS256 access tokens; verify them, older secrets' and (optionally) RS256 ones."""

    def __init__(
        self,
        secret: str,
        *,
        issuer: str,
        audience: str,
        ttl: int,
        previous_secrets: tuple[str, ...] = (),
        jwks: JwksKeys | None = None,
        jwks_issuer: str | None = None,
        jwks_audience: str | None = None,
    ) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl
        self.kid = key_id(secret)
        self._current = _Key(ALGORITHM, secret, issuer, audience)
        self._keys = {key_id(s): _Key(ALGORITHM, s, issuer, audience) for s in previous_secrets}
        self._keys[self.kid] = self._current
        self._jwks = jwks
        self._jwks_issuer = jwks_issuer or issuer
        self._jwks_audience = jwks_audience or audience
        self.revocations: SessionRevoker | None = None
        """Set once the services exist: tokens of revoked sessions are refused."""

    def issue_access_token(self, user_id: str, session_id: str) -> tuple[str, int]:
        now = int(time.time())
        claims = {
            "sub": user_id,
            "sid": session_id,
            "iat": now,
            "exp": now + self._ttl,
            "iss": self._issuer,
            "aud": self._audience,
        }
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM, headers={"kid": self.kid})
        return token, self._ttl

    def _key(self, header: dict[str, Any]) -> _Key:
        kid = header.get("kid")
        if kid is None:
            return self._current
        if not isinstance(kid, str):
            raise OpError(UNAUTHORIZED, "invalid access token: bad kid")
        found = self._keys.get(kid)
        if found is not None:
            return found
        if self._jwks is not None:
            public = self._jwks.get(kid)
            if public is not None:
                return _Key(
                    "RS256",
                    public,
                    self._jwks_issuer,
                    self._jwks_audience,
                    EXTERNAL_SUBJECT_PREFIX,
                )
        raise OpError(UNAUTHORIZED, "invalid access token: unknown key id")

    def verify(self, token: str) -> Identity:
        """Return the token's identity or raise ``unauthorized`` / ``token_expired`` /
        ``session_revoked``."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise OpError(UNAUTHORIZED, f"invalid access token: {exc}") from None
        key = self._key(header)
        if header.get("alg") != key.algorithm:
            raise OpError(UNAUTHORIZED, "invalid access token: algorithm not allowed for this key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=key.audience,
                issuer=key.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise OpError(TOKEN_EXPIRED, "the access token has expired; refresh it") from None
        except jwt.PyJWTError as exc:
            raise OpError(UNAUTHORIZED, f"invalid access token: {exc}") from None
        sub = claims["sub"]
        subject = key.subject_prefix + sub if isinstance(sub, str) else None
        if subject is None or not is_user_id(subject):
            raise OpError(UNAUTHORIZED, "invalid access token: bad sub claim")
        session = claims.get("sid")
        if session is not None and (
            not isinstance(session, str) or not 0 < len(session) <= MAX_SESSION_ID
        ):
            raise OpError(UNAUTHORIZED, "invalid access token: bad sid claim")
        if (
            session is not None
            and self.revocations is not None
            and self.revocations.is_revoked(session)
        ):
            raise OpError(SESSION_REVOKED, "this session was logged out; log in again")
        exp = claims["exp"]
        if not isinstance(exp, int | float):
            raise OpError(UNAUTHORIZED, "invalid access token: bad exp claim")
        return Identity(subject, int(exp), session)
