"""MOOSIC_REDIS_BREAKER_FAILURES and MOOSIC_REDIS_BREAKER_COOLDOWN (issue 21, item 7)."""

from __future__ import annotations

import pytest

from gateway.settings import SettingsError, load_settings

SECRET = "x" * 32


def test_breaker_defaults_and_parsed_values() -> None:
    default = load_settings({"MOOSIC_JWT_SECRET": SECRET})
    assert (default.redis.redis_breaker_failures, default.redis.redis_breaker_cooldown) == (5, 2.0)
    chosen = load_settings(
        {
            "MOOSIC_JWT_SECRET": SECRET,
            "MOOSIC_REDIS_BREAKER_FAILURES": "12",
            "MOOSIC_REDIS_BREAKER_COOLDOWN": "0.5",
        }
    )
    assert (chosen.redis.redis_breaker_failures, chosen.redis.redis_breaker_cooldown) == (12, 0.5)


@pytest.mark.parametrize(
    ("failures", "cooldown"), [("0", "0.01"), ("10001", "601"), ("five", "soon")]
)
def test_breaker_values_out_of_range_are_refused(failures: str, cooldown: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            {
                "MOOSIC_JWT_SECRET": SECRET,
                "MOOSIC_REDIS_BREAKER_FAILURES": failures,
                "MOOSIC_REDIS_BREAKER_COOLDOWN": cooldown,
            }
        )
    problems = caught.value.problems
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"MOOSIC_REDIS_BREAKER_FAILURES={failures!r}: must be")
    assert problems[1].startswith(f"MOOSIC_REDIS_BREAKER_COOLDOWN={cooldown!r}: must be")
