"""The local backend's signatures: upload policies and playback links, HMAC-SHA256.

Both are ``base64url(JSON)`` signed with a key only the gateway holds; each kind of signature is
domain-separated (``b"upload\\n"`` / ``b"play\\n"``) so one can never pass for the other.
Signatures are compared in constant time. Nothing here reads a clock: callers pass ``now``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

import orjson

from media.errors import LinkExpired, LinkInvalid, UploadRefused
from media.keys import ID_RE

_UPLOAD = b"upload\n"
_PLAY = b"play\n"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def derive_key(secret: str, purpose: str) -> bytes:
    """Derive a signing key for ``purpose`` from a deployment secret (never the secret itself)."""
    return hmac.new(secret.encode(), b"moosic media " + purpose.encode(), hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class UploadPolicy:
    """What one signed upload form allows: exactly this key, this type, this many bytes, until."""

    key: str
    content_type: str
    max_bytes: int
    expires_at: int
    owner: str
    video_id: str


class Signer:
    """Signs and verifies upload policies and playback tokens with one HMAC key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the signing key must have at least 32 bytes")
        self._key = key

    def _mac(self, kind: bytes, payload: str) -> str:
        data = kind + payload.encode("utf-8", "surrogatepass")
        return _b64(hmac.new(self._key, data, hashlib.sha256).digest())

    def _matches(self, kind: bytes, payload: str, given: str) -> bool:
        """Compare ``given`` with the payload's MAC in constant time, whatever its characters.

        ``hmac.compare_digest`` refuses ``str`` with non-ASCII characters (a ``TypeError``, a
        500): a client's field is compared as bytes, so any text is simply a mismatch.
        """
        expected = self._mac(kind, payload).encode()
        return hmac.compare_digest(expected, given.encode("utf-8", "surrogatepass"))

    # -- upload policies -------------------------------------------------------------------

    def sign_policy(self, policy: UploadPolicy) -> tuple[str, str]:
        """Return ``(policy, signature)`` as the form's two fields."""
        doc = {
            "key": policy.key,
            "content_type": policy.content_type,
            "max_bytes": policy.max_bytes,
            "expires_at": policy.expires_at,
            "owner": policy.owner,
            "video_id": policy.video_id,
        }
        encoded = _b64(orjson.dumps(doc))
        return encoded, self._mac(_UPLOAD, encoded)

    def verify_policy(self, encoded: str, signature: str, now: float) -> UploadPolicy:
        """Return the policy if ``signature`` is its own and it has not expired."""
        if not encoded or not signature or len(encoded) > 4096:
            raise UploadRefused("the form has no policy or no signature")
        if not self._matches(_UPLOAD, encoded, signature):
            raise UploadRefused("the form's signature does not match its policy")
        try:
            doc = orjson.loads(_unb64(encoded))
            policy = UploadPolicy(
                key=str(doc["key"]),
                content_type=str(doc["content_type"]),
                max_bytes=int(doc["max_bytes"]),
                expires_at=int(doc["expires_at"]),
                owner=str(doc["owner"]),
                video_id=str(doc["video_id"]),
            )
        except (ValueError, KeyError, TypeError):
            # Only a signed policy gets here, so this is a bug of ours, not of the client.
            raise UploadRefused("the form's policy cannot be read") from None
        if now >= policy.expires_at:
            raise UploadRefused("the upload form expired; ask for a new one")
        return policy

    # -- playback tokens -------------------------------------------------------------------

    def sign_playback(self, owner: str, video_id: str, expires_at: int) -> str:
        """Return a token granting read access to one video's outputs until ``expires_at``."""
        payload = f"{owner}.{video_id}.{expires_at}"
        return f"{payload}.{self._mac(_PLAY, payload)}"

    def verify_playback(self, token: str, now: float) -> tuple[str, str]:
        """Return ``(owner, video_id)`` of a valid, unexpired token."""
        parts = token.split(".")
        if len(parts) != 4 or len(token) > 400:
            raise LinkInvalid("malformed playback link")
        owner, video_id, expires, mac = parts
        payload = f"{owner}.{video_id}.{expires}"
        if not self._matches(_PLAY, payload, mac):
            raise LinkInvalid("the playback link's signature does not match")
        if ID_RE.fullmatch(owner) is None or ID_RE.fullmatch(video_id) is None:
            raise LinkInvalid("malformed playback link")
        if not expires.isdigit() or now >= int(expires):
            raise LinkExpired("the playback link expired; ask for a new one")
        return owner, video_id
