"""RS256 verification keys from a JWKS document (an external identity provider such as Cognito).

The document is read at start-up from ``MOOSIC_JWKS_URL`` (``https://…``, ``http://…``, or a
file: ``file:///…`` or an absolute path) and read again every ``MOOSIC_JWKS_REFRESH`` seconds in
the background. A token signed with a key id the gateway does not know yet makes it read the
document early (at most once every :data:`MIN_REFETCH_SECONDS`), so a provider's key rotation
is picked up without waiting for the next refresh. A failed read keeps the keys already known.

Only RSA keys for signatures (``use`` absent or ``sig``) with ``alg`` absent or ``RS256`` are
taken; anything else in the document is ignored.

The provider's subjects live in their own namespace: a token whose ``sub`` is ``abc`` acts as
user ``ext-abc`` (:data:`EXTERNAL_SUBJECT_PREFIX`), never as a local account, even when the
provider's ``sub`` equals a local user id (see docs/security.md, "Red-team findings").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import orjson

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 1024 * 1024
FETCH_TIMEOUT = 10.0
MIN_REFETCH_SECONDS = 30.0
"""Unknown key ids make the document be read again, but not more often than this."""
RETRY_SECONDS = 30.0
"""After a failed read, the next attempt comes this much later (or at the refresh, if sooner)."""
EXTERNAL_SUBJECT_PREFIX = "ext-"
"""Put before the provider's ``sub`` to make the user id. Local ids are 26 characters of
upper-case Crockford base32 (:mod:`storage.ids`), so an id with a lower-case letter and a ``-``
can never be one; the ids stay user ids (letters, digits, ``_``, ``-``: no ``:``, which channel
names use as a separator), so subjects are at most 60 characters."""


class JwksError(Exception):
    """The document could not be read, or held no usable key."""


def parse_jwks(document: bytes) -> dict[str, Any]:
    """Return ``{kid: RSA public key}`` of the RS256 signing keys in a JWKS document."""
    try:
        doc = orjson.loads(document)
    except orjson.JSONDecodeError as exc:
        raise JwksError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise JwksError('not a JWKS document (no "keys" list)')
    keys: dict[str, Any] = {}
    for entry in doc["keys"]:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if (
            not isinstance(kid, str)
            or not kid
            or entry.get("kty") != "RSA"
            or entry.get("use", "sig") != "sig"
            or entry.get("alg", "RS256") != "RS256"
        ):
            continue
        try:
            keys[kid] = jwt.PyJWK(entry, algorithm="RS256").key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            log.warning("JWKS: ignoring key %r: %s", kid[:64], exc)
    if not keys:
        raise JwksError("no RS256 signing key in the document")
    return keys


class JwksKeys:
    """The current RS256 keys by ``kid``; :meth:`run` keeps them fresh."""

    def __init__(self, source: str, *, refresh: float) -> None:
        self.source = source
        self._refresh = refresh
        self.keys: dict[str, Any] = {}
        self.loaded_at: float | None = None
        self._last_attempt = float("-inf")
        self._wake = asyncio.Event()

    def get(self, kid: str) -> Any | None:
        key = self.keys.get(kid)
        if key is None and time.monotonic() - self._last_attempt >= MIN_REFETCH_SECONDS:
            self._wake.set()  # maybe the provider rotated its keys: read the document early
        return key

    async def load(self) -> None:
        """Read the document now and replace the keys; raise :class:`JwksError` on failure."""
        self._last_attempt = time.monotonic()
        try:
            document = await self._read()
        except (OSError, aiohttp.ClientError, TimeoutError) as exc:
            raise JwksError(f"cannot read {self.source}: {exc}") from None
        self.keys = parse_jwks(document)
        self.loaded_at = time.monotonic()
        log.info("JWKS: %d RS256 keys from %s", len(self.keys), self.source)

    async def _read(self) -> bytes:
        if self.source.startswith(("http://", "https://")):
            timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self.source) as response,
            ):
                if response.status != 200:
                    raise JwksError(f"{self.source} answered HTTP {response.status}")
                body = await response.content.read(MAX_DOCUMENT_BYTES + 1)
        else:
            path = Path(self.source.removeprefix("file://"))
            body = await asyncio.to_thread(path.read_bytes)
        if len(body) > MAX_DOCUMENT_BYTES:
            raise JwksError(f"the document is over {MAX_DOCUMENT_BYTES} bytes")
        return body

    async def run(self) -> None:
        """Read the document again every ``refresh`` seconds, or early when asked; forever."""
        while True:
            failed = self.loaded_at is None or self._last_attempt > self.loaded_at
            delay = min(self._refresh, RETRY_SECONDS) if failed else self._refresh
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()
            since = time.monotonic() - self._last_attempt
            if since < MIN_REFETCH_SECONDS and since < self._refresh:
                await asyncio.sleep(min(MIN_REFETCH_SECONDS, self._refresh) - since)
            try:
                await self.load()
            except JwksError as exc:
                log.warning("JWKS: %s; keeping the %d keys known", exc, len(self.keys))
