"""Key rotation with ``kid``, RS256 keys from a JWKS document, revoked sessions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.auth.jwks import JwksError, JwksKeys, parse_jwks
from gateway.auth.tokens import TokenService, key_id
from handlers.errors import OpError

OLD = "o" * 64
NEW = "n" * 64
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    body = {"sub": "u1", "iat": now, "exp": now + 3600, "iss": "moosic", "aud": "moosic"}
    body.update(changes)
    return body


def jwk(key: rsa.RSAPrivateKey, kid: str, **extra: str) -> dict[str, Any]:
    numbers = key.public_key().public_numbers()

    def b64(value: int) -> str:
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return {"kty": "RSA", "kid": kid, "n": b64(numbers.n), "e": b64(numbers.e), **extra}


def hand_made(header: dict[str, Any], body: dict[str, Any], secret: bytes) -> str:
    """A JWT built by hand: PyJWT refuses to make the odd ones attackers make."""
    head = base64.urlsafe_b64encode(orjson.dumps(header)).rstrip(b"=")
    payload = base64.urlsafe_b64encode(orjson.dumps(body)).rstrip(b"=")
    signature = hmac.new(secret, head + b"." + payload, hashlib.sha256).digest()
    return b".".join((head, payload, base64.urlsafe_b64encode(signature).rstrip(b"="))).decode()


def code_of(service: TokenService, token: str) -> str:
    with pytest.raises(OpError) as caught:
        service.verify(token)
    return caught.value.kind.code


def hs_service(secret: str = NEW, previous: tuple[str, ...] = ()) -> TokenService:
    return TokenService(
        secret, issuer="moosic", audience="moosic", ttl=60, previous_secrets=previous
    )


def test_rotation_keeps_old_tokens_valid_until_the_old_secret_is_dropped() -> None:
    before, _ = hs_service(OLD).issue_access_token("u1", "s1")
    rotated = hs_service(NEW, previous=(OLD,))
    assert rotated.verify(before).user_id == "u1"
    after, _ = rotated.issue_access_token("u2", "s2")
    assert jwt.get_unverified_header(after)["kid"] == key_id(NEW) != key_id(OLD)
    assert hs_service(OLD, previous=(NEW,)).verify(after).user_id == "u2"
    assert code_of(hs_service(NEW), before) == "unauthorized"  # old secret dropped


def test_a_token_without_kid_is_checked_against_the_current_secret_only() -> None:
    legacy = jwt.encode(claims(), NEW, algorithm="HS256")
    assert hs_service(NEW).verify(legacy).session_id is None
    assert code_of(hs_service(NEW, previous=(OLD,)), jwt.encode(claims(), OLD)) == "unauthorized"


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode(claims(), NEW, algorithm="HS256", headers={"kid": "unknown"}),
        jwt.encode(claims(), NEW, algorithm="HS512", headers={"kid": key_id(NEW)}),
        jwt.encode(claims(), None, algorithm="none", headers={"kid": key_id(NEW)}),
        jwt.encode(claims(sid=""), NEW, algorithm="HS256", headers={"kid": key_id(NEW)}),
        jwt.encode(claims(sid=7), NEW, algorithm="HS256", headers={"kid": key_id(NEW)}),
        hand_made({"alg": "HS256", "kid": 5}, claims(), NEW.encode()),
        jwt.encode(claims(), RSA_KEY, algorithm="RS256"),  # RS256 without a JWKS
    ],
)
def test_refused_headers(token: str) -> None:
    assert code_of(hs_service(), token) == "unauthorized"


class Revoked:
    def __init__(self, *sessions: str) -> None:
        self.sessions = set(sessions)

    def is_revoked(self, session_id: str) -> bool:
        return session_id in self.sessions

    async def revoke(self, session_id: str, user_id: str) -> None:
        self.sessions.add(session_id)


def test_a_revoked_session_is_refused() -> None:
    service = hs_service()
    token, _ = service.issue_access_token("u1", "gone")
    other, _ = service.issue_access_token("u1", "kept")
    service.revocations = Revoked("gone")
    assert code_of(service, token) == "session_revoked"
    assert service.verify(other).session_id == "kept"


def rs_service(jwks: JwksKeys, **options: Any) -> TokenService:
    return TokenService(NEW, issuer="moosic", audience="moosic", ttl=60, jwks=jwks, **options)


def keys_from(*entries: dict[str, Any]) -> JwksKeys:
    jwks = JwksKeys("/nonexistent", refresh=3600)
    jwks.keys = parse_jwks(orjson.dumps({"keys": list(entries)}))
    return jwks


def test_rs256_tokens_verify_with_the_jwks_key_their_kid_names() -> None:
    service = rs_service(
        keys_from(jwk(RSA_KEY, "idp-1"), jwk(OTHER_RSA_KEY, "idp-2")),
        jwks_issuer="https://idp.example",
        jwks_audience="app-client",
    )
    good = claims(iss="https://idp.example", aud="app-client", sub="cognito-sub-1")
    token = jwt.encode(good, RSA_KEY, algorithm="RS256", headers={"kid": "idp-1"})
    identity = service.verify(token)
    assert (identity.user_id, identity.session_id) == ("ext-cognito-sub-1", None)
    # Signed by the other key of the set while naming this one: refused.
    forged = jwt.encode(good, OTHER_RSA_KEY, algorithm="RS256", headers={"kid": "idp-1"})
    assert code_of(service, forged) == "unauthorized"
    # Our own issuer and audience are not the provider's.
    ours = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "idp-1"})
    assert code_of(service, ours) == "unauthorized"
    expired = claims(iss="https://idp.example", aud="app-client", exp=int(time.time()) - 120)
    late = jwt.encode(expired, RSA_KEY, algorithm="RS256", headers={"kid": "idp-1"})
    assert code_of(service, late) == "token_expired"


def test_hs256_signed_with_the_rsa_public_key_is_refused() -> None:
    service = rs_service(keys_from(jwk(RSA_KEY, "idp-1")))
    public_pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # The classic confusion attack: the public key used as an HMAC secret. PyJWT itself
    # refuses to sign with it, so forge the signature by hand.
    token = hand_made({"alg": "HS256", "typ": "JWT", "kid": "idp-1"}, claims(), public_pem)
    assert code_of(service, token) == "unauthorized"


def test_jwks_documents_keep_only_rs256_signing_keys() -> None:
    keys = parse_jwks(
        orjson.dumps(
            {
                "keys": [
                    jwk(RSA_KEY, "ok"),
                    jwk(RSA_KEY, "also-ok", alg="RS256", use="sig"),
                    jwk(RSA_KEY, "encryption", use="enc"),
                    jwk(RSA_KEY, "other-alg", alg="RS512"),
                    {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
                    {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
                    jwk(RSA_KEY, ""),
                    "not an object",
                ]
            }
        )
    )
    assert sorted(keys) == ["also-ok", "ok"]
    for document in (b"not json", b"[]", b'{"keys": 1}', orjson.dumps({"keys": []})):
        with pytest.raises(JwksError):
            parse_jwks(document)


async def test_jwks_loads_from_a_file_and_keeps_its_keys_when_a_reload_fails(tmp_path: Any) -> None:
    path = tmp_path / "jwks.json"
    path.write_bytes(orjson.dumps({"keys": [jwk(RSA_KEY, "file-1")]}))
    jwks = JwksKeys(f"file://{path}", refresh=3600)
    await jwks.load()
    assert list(jwks.keys) == ["file-1"]
    path.write_bytes(b"garbage")
    with pytest.raises(JwksError):
        await jwks.load()
    assert list(jwks.keys) == ["file-1"]
    path.unlink()
    with pytest.raises(JwksError):
        await jwks.load()
    assert list(jwks.keys) == ["file-1"]
