"""The address rule of handlers.recovery (documented in docs/protocol.md)."""

from __future__ import annotations

import re

import pytest

from handlers.errors import OpError
from handlers.recovery import EMAIL_PATTERN, MAX_EMAIL_LENGTH, normalise_email


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("dara@example.com", "dara@example.com"),
        ("Dara.K@Example.COM", "Dara.K@example.com"),  # the domain lowercased, the local part kept
        ("d+tag@mail.example.co.uk", "d+tag@mail.example.co.uk"),
        ("o'brien_1#x@xn--bcher-kva.example", "o'brien_1#x@xn--bcher-kva.example"),
        ("a@b.cd", "a@b.cd"),
        ("x@a-b.c0m", "x@a-b.c0m"),
    ],
)
def test_accepted_addresses(given: str, stored: str) -> None:
    assert normalise_email(given) == stored
    assert re.search(EMAIL_PATTERN, given)  # the documented schema accepts it too


def _long_address(length: int) -> str:
    domain_len = length - 64 - 1  # a full local part, the @, then labels to the length
    labels, left = [], domain_len
    while left > 0:
        take = min(63, left if left <= 63 else left - 2)
        labels.append("b" * take)
        left -= take + 1
    return "a" * 64 + "@" + ".".join(labels)


@pytest.mark.parametrize(
    "given",
    [
        "no-at-sign",
        "two@@example.com",
        "dara@localhost",  # one label
        "@example.com",
        "dara@",
        ".dara@example.com",
        "dara.@example.com",
        "da..ra@example.com",
        "dara@-example.com",
        "dara@example-.com",
        "dara@example..com",
        "dara@example.123",  # the top label starts with a letter
        "dara@example.1com",
        '"quoted"@example.com',
        "dara@[127.0.0.1]",
        "dára@example.com",
        "dara@exämple.com",
        "da ra@example.com",
        "dara@exa_mple.com",
        "a" * 65 + "@example.com",
        "dara@" + "b" * 64 + ".com",
    ],
)
def test_refused_addresses(given: str) -> None:
    with pytest.raises(OpError) as refused:
        normalise_email(given)
    assert refused.value.kind.code == "invalid_email"
    # The documented schema (pattern, no "..", maxLength) refuses it too.
    schema_ok = re.search(EMAIL_PATTERN, given) and ".." not in given and len(given) <= 254
    assert not schema_ok


def test_the_length_limit_is_254() -> None:
    longest = _long_address(MAX_EMAIL_LENGTH)
    assert len(longest) == MAX_EMAIL_LENGTH
    assert normalise_email(longest) == longest
    with pytest.raises(OpError):
        normalise_email(_long_address(MAX_EMAIL_LENGTH + 1))
