"""Access tokens: short-lived JWTs, algorithm pinned, ``exp``/``iat``/``iss``/``aud`` checked."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from handlers.channels import is_user_id
from handlers.errors import TOKEN_EXPIRED, UNAUTHORIZED, OpError

ALGORITHM = "HS256"
LEEWAY_SECONDS = 30


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token speaks for, and until when."""

    user_id: str
    expires_at: int


class TokenService:
    """Issue and verify HS256 access tokens (the only algorithm accepted)."""

    def __init__(self, secret: str, *, issuer: str, audience: str, ttl: int) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl

    def issue_access_token(self, user_id: str) -> tuple[str, int]:
        now = int(time.time())
        claims = {
            "sub": user_id,
            "iat": now,
            "exp": now + self._ttl,
            "iss": self._issuer,
            "aud": self._audience,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), self._ttl

    def verify(self, token: str) -> Identity:
        """Return the token's identity or raise ``unauthorized`` / ``token_expired``."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise OpError(TOKEN_EXPIRED, "the access token has expired; refresh it") from None
        except jwt.PyJWTError as exc:
            raise OpError(UNAUTHORIZED, f"invalid access token: {exc}") from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not is_user_id(subject):
            raise OpError(UNAUTHORIZED, "invalid access token: bad sub claim")
        return Identity(subject, int(claims["exp"]))
