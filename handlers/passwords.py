"""Password hashing with scrypt (memory-hard), off the event loop and bounded.

Each hash takes ``128 * n * r`` bytes of memory (16 MiB at the defaults) and tens of
milliseconds of CPU, so at most ``concurrency`` run at once; further callers wait for a slot.
Encoded form: ``scrypt$n$r$p$salt$hash`` (base64, no padding), so parameters can change later
without breaking stored hashes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os

_DUMMY_SALT = b"moosic-timing-dummy-salt"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


class ScryptHasher:
    """:class:`handlers.base.PasswordHasher` on :func:`hashlib.scrypt`."""

    def __init__(self, *, n: int = 2**14, r: int = 8, p: int = 1, concurrency: int = 2) -> None:
        if n < 2 or n & (n - 1):
            raise ValueError("scrypt n must be a power of two")
        self._n, self._r, self._p = n, r, p
        self._slots = asyncio.Semaphore(concurrency)

    def _derive(self, password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        return hashlib.scrypt(
            password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + 1024 * 1024, dklen=32
        )

    async def _run(self, password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        async with self._slots:
            return await asyncio.to_thread(self._derive, password, salt, n, r, p)

    async def hash(self, password: str) -> str:
        salt = os.urandom(16)
        digest = await self._run(password, salt, self._n, self._r, self._p)
        return f"scrypt${self._n}${self._r}${self._p}${_b64(salt)}${_b64(digest)}"

    async def verify(self, password: str, encoded: str | None) -> bool:
        if encoded is None:
            # Unknown user: do the same work so response time does not reveal which names exist.
            await self._run(password, _DUMMY_SALT, self._n, self._r, self._p)
            return False
        try:
            scheme, n, r, p, salt, digest = encoded.split("$")
            if scheme != "scrypt":
                return False
            actual = await self._run(password, _unb64(salt), int(n), int(r), int(p))
        except ValueError:
            return False
        return hmac.compare_digest(actual, _unb64(digest))
