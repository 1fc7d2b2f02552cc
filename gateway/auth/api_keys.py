"""API keys of the server API: which configured key (if any) a request presents.

Keys come from ``MOOSIC_SERVER_API_KEYS`` (comma-separated, each at least 32 characters).
Several may be listed at once, so a key rotates like the JWT secret: add the new key to every
node, move the back ends onto it, then drop the old one.

A presented key is compared with *every* configured key with :func:`hmac.compare_digest`, with
no early exit, so neither the answer's time nor its content tells which key (or how much of
one) matched. Keys are compared as SHA-256 digests: equal lengths whatever was presented.
Logs name a key by its position and a short fingerprint (a hash), never by the key itself.
"""

from __future__ import annotations

import hashlib
import hmac

FINGERPRINT_CHARS = 8
"""Hex characters of the fingerprint a log line names a key by (32 bits of a SHA-256)."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(b"moosic-server-api-key\x00" + key.encode()).digest()


def fingerprint(key: str) -> str:
    """A short, non-reversible name for a key (safe to log)."""
    return _digest(key).hex()[:FINGERPRINT_CHARS]


def presented_key(authorization: str | None, api_key: str | None) -> str | None:
    """The key a request carries: ``Authorization: Bearer <key>`` or ``X-Api-Key: <key>``."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    if api_key and api_key.strip():
        return api_key.strip()
    return None


class ApiKeys:
    """The configured keys, as digests; :meth:`match` says which one a presented key is."""

    __slots__ = ("_digests", "fingerprints")

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._digests = tuple(_digest(key) for key in keys)
        self.fingerprints = tuple(fingerprint(key) for key in keys)

    def __bool__(self) -> bool:
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def match(self, presented: str | None) -> int | None:
        """The index of the configured key equal to ``presented``; None for no match.

        Every configured key is compared, whatever matched before it.
        """
        if presented is None or not self._digests:
            return None
        candidate = _digest(presented)
        found: int | None = None
        for index, digest in enumerate(self._digests):
            if hmac.compare_digest(candidate, digest) and found is None:
                found = index
        return found
