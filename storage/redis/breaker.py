"""A circuit breaker: stop waiting on a server that stopped answering, and try it again later.

A frozen Redis (stopped, not dead: its sockets stay open) answers nothing and refuses nothing,
so every caller waits out its own timeout, again and again. The breaker counts consecutive
failures of one client; after ``threshold`` of them it *opens* and callers fail at once with
:class:`CircuitOpen` (an ``Unavailable``, so every existing fallback applies). After
``cooldown`` seconds one caller is let through as a probe (*half-open*): its success closes the
breaker, its failure opens it for another cooldown. A server that answers with an error reply
is alive: only timeouts and lost or refused connections count as failures. The Redis client
does not let a caller's call be the probe: it refuses that call too and sends a ``PING`` of its
own in the background (``RedisClient.admit``), so no op waits once the circuit is open.

There is one breaker per Redis client (:mod:`storage.redis.client`, one per node), shared by
everything that uses it: the broker, the rate limiter, presence, revocations and hot counters
all learn at once that Redis is away.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable

from storage.errors import Unavailable

log = logging.getLogger(__name__)


class CircuitOpen(Unavailable):
    """Refused without trying: the breaker is open."""


class State(enum.IntEnum):
    """Exported as a gauge: 0 closed, 1 open, 2 half-open."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


class CircuitBreaker:
    """Consecutive-failure breaker with one probe at a time after a cool-down."""

    def __init__(
        self,
        name: str,
        *,
        threshold: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1 or cooldown <= 0:
            raise ValueError("threshold must be at least 1 and cooldown positive")
        self.name = name
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self.state = State.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_at = 0.0
        self.trips = 0
        """How many times it opened (closed or half-open to open)."""
        self.rejected = 0
        """Calls refused without trying while open."""

    def allow(self) -> bool:
        """Tell whether a call may go to the server now; False means fail fast."""
        if self.state is State.CLOSED:
            return True
        now = self._clock()
        if self.state is State.OPEN:
            if now - self._opened_at < self._cooldown:
                self.rejected += 1
                return False
            self.state = State.HALF_OPEN
            self._probe_at = now
            return True  # this caller is the probe
        # Half-open: one probe at a time. A probe that never reports back (its caller was
        # cancelled) must not wedge the breaker: after another cool-down, let a new one through.
        if now - self._probe_at >= self._cooldown:
            self._probe_at = now
            return True
        self.rejected += 1
        return False

    def check(self) -> None:
        """Raise :class:`CircuitOpen` unless :meth:`allow`."""
        if not self.allow():
            raise CircuitOpen(f"{self.name} is not answering (circuit open); not waiting for it")

    def success(self) -> None:
        if self.state is not State.CLOSED:
            log.warning("%s answers again; circuit closed", self.name)
        self.state = State.CLOSED
        self._failures = 0

    def failure(self) -> None:
        self._failures += 1
        if self.state is State.HALF_OPEN or (
            self.state is State.CLOSED and self._failures >= self._threshold
        ):
            if self.state is State.CLOSED:
                log.warning(
                    "%s failed %d times in a row; circuit open, calls fail fast for %gs",
                    self.name,
                    self._failures,
                    self._cooldown,
                )
            self.state = State.OPEN
            self._opened_at = self._clock()
            self.trips += 1
