"""Time-sortable identifiers (ULID layout: 48-bit milliseconds + 80 random bits, Crockford base32).

Ids made by one generator are strictly increasing, even within one millisecond, so sorting by
id sorts by creation time on a node; across nodes they sort by millisecond.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_MAX = (1 << 80) - 1
ID_LENGTH = 26


def _encode(value: int) -> str:
    chars = []
    for _ in range(ID_LENGTH):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def timestamp_ms(identifier: str) -> int:
    """Return the millisecond timestamp embedded in an id made by :class:`IdGenerator`."""
    value = 0
    for char in identifier[:10]:
        value = (value << 5) | _ALPHABET.index(char)
    return value


def is_valid(identifier: str) -> bool:
    """Tell whether ``identifier`` has the shape of an id made here."""
    return len(identifier) == ID_LENGTH and all(c in _ALPHABET for c in identifier)


class IdGenerator:
    """Make strictly increasing ids; one instance per process and backend."""

    __slots__ = ("_last_ms", "_last_random")

    def __init__(self) -> None:
        self._last_ms = -1
        self._last_random = 0

    def new(self, now_ms: int | None = None) -> str:
        """Return a new id for ``now_ms`` (wall clock when omitted)."""
        ms = int(time.time() * 1000) if now_ms is None else now_ms
        if ms <= self._last_ms:
            # Same (or an earlier, after a clock step back) millisecond: keep the order by
            # counting up from the last id instead of drawing new randomness.
            ms = self._last_ms
            rand = self._last_random + 1
            if rand > _RANDOM_MAX:
                ms += 1
                rand = int.from_bytes(os.urandom(10), "big") >> 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1
        self._last_ms = ms
        self._last_random = rand
        return _encode((ms << 80) | rand)
