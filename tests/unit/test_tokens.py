from __future__ import annotations

import time

import jwt
import pytest

from gateway.auth.tokens import TokenService, key_id
from handlers.errors import OpError

SECRET = "s" * 64


def service(**changes: object) -> TokenService:
    options = {"issuer": "moosic", "audience": "moosic", "ttl": 60}
    options.update(changes)
    return TokenService(SECRET, **options)  # type: ignore[arg-type]


def test_issue_and_verify() -> None:
    token, ttl = service().issue_access_token("user-1", "family-1")
    assert ttl == 60
    identity = service().verify(token)
    assert identity.user_id == "user-1"
    assert identity.session_id == "family-1"
    assert abs(identity.expires_at - (time.time() + 60)) < 5
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="moosic")
    assert set(claims) == {"sub", "sid", "iat", "exp", "iss", "aud"}
    assert jwt.get_unverified_header(token)["kid"] == key_id(SECRET)


def forged(**claims: object) -> str:
    now = int(time.time())
    body = {"sub": "u", "iat": now, "exp": now + 3600, "iss": "moosic", "aud": "moosic"}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (forged(exp=int(time.time()) - 120), "token_expired"),
        (forged(aud="other"), "unauthorized"),
        (forged(iss="other"), "unauthorized"),
        (forged(exp=None), "unauthorized"),
        (forged(iat=None), "unauthorized"),
        (forged(sub=None), "unauthorized"),
        (forged(sub="has:colon"), "unauthorized"),
        (forged(sub=42), "unauthorized"),
        (
            jwt.encode({"sub": "u"}, "another-secret-of-enough-length-000", algorithm="HS256"),
            "unauthorized",
        ),
        (
            jwt.encode(
                {"sub": "u", "exp": 2**40, "iat": 1, "iss": "moosic", "aud": "moosic"},
                None,
                algorithm="none",
            ),
            "unauthorized",
        ),
        (
            jwt.encode(
                {"sub": "u", "exp": 2**40, "iat": 1, "iss": "moosic", "aud": "moosic"},
                SECRET,
                algorithm="HS512",
            ),
            "unauthorized",
        ),
        ("not.a.token", "unauthorized"),
    ],
)
def test_refused_tokens(token: str, code: str) -> None:
    with pytest.raises(OpError) as caught:
        service().verify(token)
    assert caught.value.kind.code == code
