"""A small time-bounded cache for records that change rarely and are read on every request."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Values kept ``ttl`` seconds, at most ``size`` of them (least recently used dropped first).

    ``ttl`` 0 keeps nothing. Absence can be cached too (a value of None), so a flood of requests
    for an unknown key does not reach the store either.
    """

    def __init__(
        self,
        *,
        ttl: float = 2.0,
        size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self._size = size
        self._clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def lookup(self, key: K) -> tuple[bool, V | None]:
        """Return (True, value) while ``key`` is fresh, else (False, None)."""
        found = self._items.get(key)
        if found is None:
            return False, None
        expires, value = found
        if self._clock() >= expires:
            del self._items[key]
            return False, None
        self._items.move_to_end(key)
        return True, value

    def put(self, key: K, value: V) -> None:
        if self.ttl <= 0:
            return
        self._items[key] = (self._clock() + self.ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def drop(self, key: K) -> None:
        self._items.pop(key, None)
