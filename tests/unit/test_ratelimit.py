"""Token buckets, the rule syntax, and the revocation list, with a fake clock."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.auth.revocation import Revocations
from gateway.guard.ratelimit import DEFAULT_RULES, Limiter, LocalBuckets, RateLimits, Rule
from gateway.metrics import Metrics
from gateway.settings import SettingsError, load_settings
from handlers.errors import RateLimitedError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_capacity_at_once_then_its_rate() -> None:
    clock = Clock()
    buckets = LocalBuckets(clock=clock)
    rule = Rule(5, 10)  # 5 at once, then one every 2 seconds
    assert [buckets.take("publish", rule, "u1") for _ in range(5)] == [0.0] * 5
    assert buckets.take("publish", rule, "u1") == pytest.approx(2.0)
    assert buckets.take("publish", rule, "u2") == 0.0  # another subject, another bucket
    assert buckets.take("login", rule, "u1") == 0.0  # another rule, another bucket
    clock.now += 1.0
    assert buckets.take("publish", rule, "u1") == pytest.approx(1.0)
    clock.now += 1.0
    assert buckets.take("publish", rule, "u1") == 0.0
    clock.now += 1000.0  # refills to capacity, never beyond
    assert [buckets.take("publish", rule, "u1") for _ in range(6)].count(0.0) == 5


def test_buckets_are_bounded() -> None:
    buckets = LocalBuckets(size=3, clock=Clock())
    for n in range(10):
        buckets.take("r", Rule(1, 1), f"s{n}")
    assert len(buckets) == 3


async def test_the_limiter_raises_rate_limited_with_the_wait() -> None:
    metrics = Metrics()
    limiter = Limiter(
        RateLimits.of({"publish": Rule(2, 60)}), metrics, local=LocalBuckets(clock=Clock())
    )
    assert limiter.rules == frozenset({"publish"})
    await limiter.check("publish", "u1")
    await limiter.check("publish", "u1")
    with pytest.raises(RateLimitedError) as caught:
        await limiter.check("publish", "u1")
    error = caught.value
    assert error.retry_after == pytest.approx(30.0)
    assert error.to_dict()["code"] == "rate_limited"
    assert error.to_dict()["retryable"] is True
    assert error.to_dict()["retry_after"] == pytest.approx(30.0)
    assert metrics.rate_limited == 1
    for _ in range(100):
        await limiter.check("unlimited_op", "u1")


def test_retry_after_is_rounded_up_to_the_millisecond() -> None:
    assert RateLimitedError("x", 0.0000001).retry_after == 0.001
    assert RateLimitedError("x", 0.1).retry_after == 0.1
    assert RateLimitedError("x", 1.0004).retry_after == 1.001


def test_rule_syntax() -> None:
    limits = RateLimits.parse("publish=5/10s, like=3/2m,login=off, comment=1/1h, typing=4/0.5")
    rules = limits.as_dict()
    assert rules["publish"] == Rule(5, 10)
    assert rules["like"] == Rule(3, 120)
    assert rules["comment"] == Rule(1, 3600)
    assert rules["typing"] == Rule(4, 0.5)
    assert "login" not in rules
    assert rules["register"] == DEFAULT_RULES["register"]  # untouched defaults stay
    assert RateLimits.parse("off").as_dict() == {}
    assert RateLimits.parse("").as_dict() == DEFAULT_RULES
    assert str(Rule(200, 40)) == "200/40s"
    assert str(Rule(20, 3600)) == "20/1h"
    assert str(Rule(3, 120)) == "3/2m"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("publish=5", "is not name=N/PERIOD"),
        ("publish=0/1s", "N must be at least 1"),
        ("publish=5/0s", "PERIOD 1ms to 7 days"),
        ("publsh=5/1s", "'publsh' is neither an op"),
        ("Publish=5/1s", "is not name=N/PERIOD"),
    ],
)
def test_bad_rules_are_reported_at_start_up(text: str, problem: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"MOOSIC_JWT_SECRET": "x" * 32, "MOOSIC_RATE_LIMITS": text})
    assert problem in caught.value.problems[0]


def test_every_op_may_be_limited_by_name() -> None:
    settings = load_settings(
        {"MOOSIC_JWT_SECRET": "x" * 32, "MOOSIC_RATE_LIMITS": "history=10/1s,read=5/1s"}
    )
    assert settings.guard.rate_limits.as_dict()["history"] == Rule(10, 1)


async def test_revocations_expire_and_call_back_once() -> None:
    clock = Clock()
    revoked: list[tuple[str, str]] = []
    revocations = Revocations(ttl=60, on_revoked=lambda s, u: revoked.append((s, u)), clock=clock)
    await revocations.revoke("s1", "u1")
    await revocations.revoke("s1", "u1")
    assert revoked == [("s1", "u1")]
    assert revocations.is_revoked("s1")
    assert not revocations.is_revoked("s2")
    clock.now += 61
    assert not revocations.is_revoked("s1")
    revocations._forget_expired()
    assert len(revocations) == 0


def test_the_documented_defaults_are_the_defaults() -> None:
    protocol = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    section = protocol.split("## Rate limits", 1)[1]
    table = dict(
        re.findall(r"^\| `([a-z_]+)` \| [^|]+ \| [^|]+ \| ([^ |]+) \|$", section, re.MULTILINE)
    )
    ops = dict(re.findall(r"`([a-z_]+)`\s+(\d+/\d+[smh])", section))
    documented = {**table, **ops}
    assert documented.pop("connect_ip") == "off"
    assert documented == {name: str(rule) for name, rule in DEFAULT_RULES.items()}
