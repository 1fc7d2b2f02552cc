from __future__ import annotations

import pytest

from handlers.passwords import ScryptHasher


async def test_hash_and_verify() -> None:
    hasher = ScryptHasher(n=2**10)
    encoded = await hasher.hash("s3cret pass")
    assert encoded.startswith("scrypt$1024$8$1$")
    assert await hasher.verify("s3cret pass", encoded)
    assert not await hasher.verify("other pass", encoded)
    assert await hasher.hash("s3cret pass") != encoded  # salted


async def test_verify_survives_bad_input_and_parameter_changes() -> None:
    old = await ScryptHasher(n=2**8).hash("pw-12345")
    assert await ScryptHasher(n=2**10).verify("pw-12345", old)
    assert not await ScryptHasher(n=2**10).verify("pw-12345", None)
    assert not await ScryptHasher(n=2**10).verify("pw-12345", "bcrypt$whatever")
    assert not await ScryptHasher(n=2**10).verify("pw-12345", "scrypt$x$y")


def test_n_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        ScryptHasher(n=1000)
