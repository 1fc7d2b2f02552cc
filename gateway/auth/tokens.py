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

HS256 tokens (every token the gateway issues) are checked here without PyJWT, parsing the token
once (PyJWT parses it twice, for the header and again to verify, and validates base64 one
character at a time in Python: about 60 µs a token against about 10 here): strict base64url
segments (canonical: one spelling per token), the header's ``alg`` pinned by the key, the HMAC compared in constant time
(``hmac.compare_digest``), then the claim rules of PyJWT (``exp`` and ``nbf`` with the
leeway, ``iat`` an integer not in the future, ``iss`` equal, ``aud`` equal or listed; a ``crit``
header is refused), a little stricter: no padded segments, no string ``exp``, no fractional or
boolean ``iat``. tests/unit/test_tokens.py checks that the two agree on everything else. RS256
tokens of an identity provider keep going through PyJWT.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from typing import Any

import jwt
import orjson

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
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
"""A base64url segment as JWTs write it: no padding, no other character."""


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
    secret: bytes = b""
    """The HMAC key as bytes (HS256 keys only)."""


class _Invalid(Exception):
    """A token refused by the HS256 path; the message says why."""


def _segment(text: str) -> bytes:
    if len(text) % 4 == 1 or not _SEGMENT.fullmatch(text):
        raise _Invalid("invalid base64url segment")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise _Invalid("invalid base64url segment") from None
    # Canonical only: the last character's unused bits must be zero (as PyJWT requires), so a
    # token has one spelling.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
        raise _Invalid("invalid base64url segment")
    return raw


def _object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        found = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _Invalid(f"invalid {what}: not JSON") from None
    if not isinstance(found, dict):
        raise _Invalid(f"invalid {what}: not a JSON object")
    return found


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _hs256(secret: str, issuer: str, audience: str) -> _Key:
    return _Key(ALGORITHM, secret, issuer, audience, secret=secret.encode("utf-8"))


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
        self._current = _hs256(secret, issuer, audience)
        self._keys = {key_id(s): _hs256(s, issuer, audience) for s in previous_secrets}
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
        parts = token.split(".")
        if len(parts) != 3:
            raise OpError(UNAUTHORIZED, "invalid access token: not a JWS compact token")
        try:
            header = _object(_segment(parts[0]), "header")
        except _Invalid as exc:
            raise OpError(UNAUTHORIZED, f"invalid access token: {exc}") from None
        key = self._key(header)
        if header.get("alg") != key.algorithm:
            raise OpError(UNAUTHORIZED, "invalid access token: algorithm not allowed for this key")
        if key.algorithm == ALGORITHM:
            try:
                claims = self._hs256_claims(token, parts, header, key)
            except _Invalid as exc:
                raise OpError(UNAUTHORIZED, f"invalid access token: {exc}") from None
        else:
            claims = self._pyjwt_claims(token, key)
        return self._identity(claims, key)

    @staticmethod
    def _hs256_claims(
        token: str, parts: list[str], header: dict[str, Any], key: _Key
    ) -> dict[str, Any]:
        if "crit" in header:
            raise _Invalid("unsupported critical header")
        signature = _segment(parts[2])
        signed = token[: len(parts[0]) + 1 + len(parts[1])].encode("ascii")
        expected = hmac.new(key.secret, signed, hashlib.sha256).digest()
        if not hmac.compare_digest(signature, expected):
            raise _Invalid("Signature verification failed")
        claims = _object(_segment(parts[1]), "payload")
        for name in ("exp", "iat", "sub", "iss", "aud"):
            if name not in claims:
                raise _Invalid(f'Token is missing the "{name}" claim')
        now = time.time()
        exp = claims["exp"]
        if not _number(exp):
            raise _Invalid("Expiration Time claim (exp) must be a number")
        if exp <= now - LEEWAY_SECONDS:
            raise OpError(TOKEN_EXPIRED, "the access token has expired; refresh it")
        iat = claims["iat"]
        if not isinstance(iat, int) or isinstance(iat, bool):
            raise _Invalid("Issued At claim (iat) must be an integer")
        if iat > now + LEEWAY_SECONDS:
            raise _Invalid("The token is not yet valid (iat)")
        if "nbf" in claims:
            nbf = claims["nbf"]
            if not _number(nbf):
                raise _Invalid("Not Before claim (nbf) must be a number")
            if nbf > now + LEEWAY_SECONDS:
                raise _Invalid("The token is not yet valid (nbf)")
        if claims["iss"] != key.issuer:
            raise _Invalid("Invalid issuer")
        aud = claims["aud"]
        if isinstance(aud, str):
            audiences = [aud]
        elif isinstance(aud, list) and all(isinstance(a, str) for a in aud):
            audiences = aud
        else:
            raise _Invalid("Invalid claim format in token")
        if key.audience not in audiences:
            raise _Invalid("Audience doesn't match")
        return claims

    @staticmethod
    def _pyjwt_claims(token: str, key: _Key) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
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
        return claims

    def _identity(self, claims: dict[str, Any], key: _Key) -> Identity:
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
