"""The retry loop on its own: what is retried, how long it waits, and what it gives up with."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from storage.dynamodb.retry import RetryPolicy, is_retryable, rejected, with_retries
from storage.errors import StorageError, Unavailable

POLICY = RetryPolicy(attempts=5, base=0.1, cap=0.5)


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "PutItem")


class Script:
    """A call that fails with the given errors, in order, then returns "done"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


class Sleeps:
    """Record the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def run(script: Script, sleeps: Sleeps, rand: Callable[[], float] = lambda: 1.0) -> str:
    return await with_retries(
        script, what="put_item", policy=POLICY, timeout=1.0, sleep=sleeps, rand=rand
    )


@pytest.mark.parametrize(
    "error",
    [
        client_error("ProvisionedThroughputExceededException"),
        client_error("ThrottlingException"),
        client_error("RequestLimitExceeded"),
        client_error("InternalServerError"),
        client_error("ServiceUnavailable"),
        client_error("TransactionConflictException"),
        ReadTimeoutError(endpoint_url="x"),
        EndpointConnectionError(endpoint_url="x"),
        TimeoutError(),
    ],
    ids=lambda e: (
        type(e).__name__ if not isinstance(e, ClientError) else e.response["Error"]["Code"]
    ),
)
async def test_transient_failures_are_retried(error: BaseException) -> None:
    script, sleeps = Script(error, error), Sleeps()

    assert await run(script, sleeps) == "done"

    assert script.calls == 3
    assert is_retryable(error)


@pytest.mark.parametrize(
    "code",
    [
        "ConditionalCheckFailedException",
        "TransactionCanceledException",
        "ValidationException",
        "ResourceNotFoundException",
        "AccessDeniedException",
    ],
)
async def test_other_failures_reach_the_caller_at_once(code: str) -> None:
    script, sleeps = Script(client_error(code)), Sleeps()

    with pytest.raises(ClientError) as raised:
        await run(script, sleeps)

    assert raised.value.response["Error"]["Code"] == code
    assert (script.calls, sleeps.waits) == (1, [])


async def test_waits_double_up_to_the_cap() -> None:
    throttled = client_error("ThrottlingException")
    script, sleeps = Script(*[throttled] * 4), Sleeps()

    await run(script, sleeps)

    assert sleeps.waits == pytest.approx([0.1, 0.2, 0.4, 0.5])


async def test_waits_are_jittered_below_the_ceiling() -> None:
    draws = iter([0.0, 0.5, 0.25, 0.99])
    throttled = client_error("ThrottlingException")
    script, sleeps = Script(*[throttled] * 4), Sleeps()

    await run(script, sleeps, rand=lambda: next(draws))

    assert sleeps.waits == pytest.approx([0.0, 0.1, 0.1, 0.495])


def test_the_default_jitter_stays_within_the_ceiling() -> None:
    policy = RetryPolicy(attempts=3, base=0.01, cap=0.2)
    for retry in range(40):
        ceiling = min(0.2, 0.01 * 2**retry)
        waits = {policy.delay(retry) for _ in range(50)}
        assert all(0 <= w <= ceiling for w in waits)
        assert len(waits) > 1  # random, not a fixed schedule


async def test_giving_up_is_unavailable_with_the_last_error() -> None:
    last = client_error("ProvisionedThroughputExceededException")
    script, sleeps = Script(*[client_error("InternalServerError")] * 4, last), Sleeps()

    with pytest.raises(Unavailable, match="put_item failed 5 times") as raised:
        await run(script, sleeps)

    assert raised.value.__cause__ is last
    assert script.calls == 5
    assert len(sleeps.waits) == 4


async def test_an_attempt_that_hangs_is_cut_off_and_retried() -> None:
    calls = 0

    async def hangs_once() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(10)
        return "done"

    result = await with_retries(
        hangs_once, what="get_item", policy=POLICY, timeout=0.05, sleep=Sleeps()
    )

    assert (result, calls) == ("done", 2)


def test_refusals_become_storage_errors() -> None:
    missing = rejected("put_item", client_error("ResourceNotFoundException"))
    invalid = rejected("put_item", client_error("ValidationException"))

    assert isinstance(missing, Unavailable)
    assert "create-tables" in str(missing)
    assert type(invalid) is StorageError
    assert "ValidationException" in str(invalid)
