"""The store as the gateway hands it out: every call timed into ``moosic_store_latency_seconds``.

:func:`timed_store` wraps the configured backend once, at start-up. Each async method of
:class:`storage.base.Store` (a fixed set, read from the protocol) becomes an instance attribute
that awaits the backend's method and observes the seconds it took, failures included, under
``{backend, operation}``; everything else (``health``, attributes) is the backend's own. The
wrapper costs one extra coroutine frame and two ``perf_counter`` reads per call; a store call
itself is a thread hop (SQLite) or a network round trip (DynamoDB).

Storage knows nothing of this: it never imports the gateway.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from gateway.metrics import Histogram, HistogramFamily
from storage.base import Store

UNTIMED = frozenset({"open", "close"})
"""Lifecycle calls: once per process, not latency anyone alarms on."""
OPERATIONS = tuple(
    sorted(
        name
        for name, member in inspect.getmembers(Store)
        if not name.startswith("_") and inspect.iscoroutinefunction(member) and name not in UNTIMED
    )
)
"""The label values of ``operation``: every async method of the Store protocol."""


class TimedStore:
    """A :class:`Store` whose calls are timed (see the module docstring)."""

    def __init__(self, store: Store, family: HistogramFamily, backend: str) -> None:
        self._store = store
        self.backend = backend
        for name in OPERATIONS:
            setattr(self, name, _timed(getattr(store, name), family, backend, name))

    @property
    def inner(self) -> Store:
        """The backend itself."""
        return self._store

    def __getattr__(self, name: str) -> Any:
        # Only reached for what __init__ did not set: health(), open(), close(), attributes.
        return getattr(self._store, name)


def _timed(
    method: Callable[..., Awaitable[Any]], family: HistogramFamily, backend: str, name: str
) -> Callable[..., Awaitable[Any]]:
    child: Histogram | None = None

    async def call(*args: Any, **kwargs: Any) -> Any:
        nonlocal child
        started = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            if child is None:
                child = family.labels(backend, name)  # once: the label set is fixed
            child.observe(time.perf_counter() - started)

    call.__name__ = call.__qualname__ = name
    return call


def timed_store(store: Store, family: HistogramFamily, backend: str) -> Store:
    """``store`` with every call timed under ``backend`` (``sqlite`` or ``dynamodb``)."""
    return cast(Store, TimedStore(store, family, backend))
