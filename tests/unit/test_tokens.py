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


def _pyjwt_outcome(token: str) -> str:
    """What PyJWT says of a token under the gateway's rules (the reference for the HS256
    path): ``ok:<sub>``, ``token_expired`` or ``unauthorized``."""
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != "HS256" or "crit" in header:
            return "unauthorized"
        claims = jwt.decode(
            token,
            SECRET,
            algorithms=["HS256"],
            audience="moosic",
            issuer="moosic",
            leeway=30,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        return "token_expired"
    except jwt.PyJWTError:
        return "unauthorized"
    return f"ok:{claims['sub']}"


def _our_outcome(token: str) -> str:
    try:
        return f"ok:{service().verify(token).user_id}"
    except OpError as refused:
        return refused.kind.code


def _raw(header: object, claims: object, secret: str = SECRET, *, pad: bool = False) -> str:
    """A token built by hand, so its segments can be anything."""
    import base64
    import hashlib
    import hmac
    import json

    def part(value: object) -> str:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        text = base64.urlsafe_b64encode(raw).decode()
        return text if pad else text.rstrip("=")

    signed = f"{part(header)}.{part(claims)}"
    mac = hmac.new(secret.encode(), signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{part(mac)}"


NOW = int(time.time())
GOOD = {"sub": "u", "iat": NOW, "exp": NOW + 3600, "iss": "moosic", "aud": "moosic"}
HS = {"alg": "HS256", "typ": "JWT"}
AGREED = [
    forged(),
    forged(exp=NOW - 10),  # within the leeway: still valid
    forged(exp=NOW - 120),
    forged(exp=NOW + 0.5 + 3600),  # a float exp
    forged(iat=NOW + 3600),  # issued in the future
    forged(iat=NOW + 10),  # within the leeway
    forged(nbf=NOW + 3600),
    forged(nbf=NOW - 5),
    forged(nbf="soon"),
    forged(aud=["other", "moosic"]),
    forged(aud=["other"]),
    forged(aud=42),
    forged(iss=None),
    forged(aud=None),
    _raw(HS, GOOD),
    _raw({**HS, "crit": ["exp"]}, GOOD),
    _raw({"alg": "none"}, GOOD),
    _raw({"alg": "HS512"}, GOOD),
    _raw(["HS256"], GOOD),
    _raw(HS, ["not", "an", "object"]),
    _raw(HS, b"not json"),
    _raw(b"not json", GOOD),
    _raw(HS, GOOD, "another-secret-of-enough-length-000"),
    _raw(HS, GOOD) + ".extra",
    _raw(HS, GOOD)[:-3],  # a cut signature
    _raw(HS, GOOD).replace(".", "!.", 1),
    "",
    "..",
    "a.b.c",
]


@pytest.mark.parametrize("token", AGREED)
def test_the_hs256_path_agrees_with_pyjwt(token: str) -> None:
    assert _our_outcome(token) == _pyjwt_outcome(token), token


def test_the_hs256_path_is_stricter_where_pyjwt_converts() -> None:
    # PyJWT takes a string exp ("int()" of it), a boolean or fractional iat and padded
    # segments (RFC 7515 writes none); the gateway refuses them.
    stricter = [forged(exp=str(NOW + 3600)), forged(iat=True), forged(iat=1.5)]
    for token in [*stricter, _raw(HS, GOOD, pad=True)]:
        assert _pyjwt_outcome(token) == "ok:u"
        assert _our_outcome(token) == "unauthorized"


def test_every_changed_character_is_refused_by_both() -> None:
    token = forged()
    alphabet = "AZaz09-_"
    for index in range(len(token)):
        if token[index] == ".":
            continue
        for char in alphabet:
            if char == token[index]:
                continue
            changed = token[:index] + char + token[index + 1 :]
            ours, theirs = _our_outcome(changed), _pyjwt_outcome(changed)
            if theirs.startswith("ok"):  # base64 slack in the last character: same bytes
                assert ours == theirs, changed
            else:
                assert ours == "unauthorized", changed


def test_a_signature_with_other_unused_bits_is_refused_by_both() -> None:
    """The last character of a 256-bit signature carries two unused bits: flipping one spells
    the same bytes differently; neither check takes that spelling."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    token = forged()
    head, _, signature = token.rpartition(".")
    assert len(signature) == 43
    other = alphabet[alphabet.index(signature[-1]) ^ 1]
    respelled = f"{head}.{signature[:-1]}{other}"
    assert _pyjwt_outcome(respelled) == "unauthorized"
    assert _our_outcome(respelled) == "unauthorized"
