"""The circuit breaker in front of Redis: opens after N failures, probes, closes on success."""

from __future__ import annotations

import pytest

from storage.errors import Unavailable
from storage.redis.breaker import CircuitBreaker, CircuitOpen, State


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def state_of(breaker: CircuitBreaker) -> State:
    return breaker.state  # read through a call: mypy would keep an earlier assert's narrowing


def test_opens_after_threshold_probes_after_cooldown_and_closes_on_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker("Redis", threshold=3, cooldown=2.0, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state is State.CLOSED
    breaker.success()  # a success resets the run of failures
    for _ in range(3):
        assert breaker.allow()
        breaker.failure()
    assert (breaker.state, breaker.trips) == (State.OPEN, 1)
    assert not breaker.allow()
    with pytest.raises(CircuitOpen) as caught:
        breaker.check()
    assert isinstance(caught.value, Unavailable)  # every existing fallback applies
    assert breaker.rejected == 2
    clock.now += 2.0
    assert breaker.allow()  # the probe
    assert state_of(breaker) is State.HALF_OPEN
    assert not breaker.allow()  # one probe at a time
    breaker.success()
    assert state_of(breaker) is State.CLOSED
    assert breaker.allow()


def test_a_failed_probe_opens_it_again_for_another_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker("Redis", threshold=1, cooldown=1.0, clock=clock)
    breaker.failure()
    clock.now += 1.0
    assert breaker.allow()
    breaker.failure()
    assert (breaker.state, breaker.trips) == (State.OPEN, 2)
    clock.now += 0.5
    assert not breaker.allow()
    clock.now += 0.5
    assert breaker.allow()


def test_a_probe_that_never_reports_does_not_wedge_it() -> None:
    clock = Clock()
    breaker = CircuitBreaker("Redis", threshold=1, cooldown=1.0, clock=clock)
    breaker.failure()
    clock.now += 1.0
    assert breaker.allow()  # its caller is cancelled and never reports
    assert not breaker.allow()
    clock.now += 1.0
    assert breaker.allow()


def test_failures_while_open_do_not_extend_it() -> None:
    clock = Clock()
    breaker = CircuitBreaker("Redis", threshold=1, cooldown=1.0, clock=clock)
    breaker.failure()
    clock.now += 0.9
    breaker.failure()  # a call that started before it opened times out now
    clock.now += 0.1
    assert breaker.allow()
    assert breaker.trips == 1
