"""Retries for DynamoDB calls: which failures are worth another try, and how long to wait.

Throttling and transient faults are retried with capped exponential backoff and full jitter (a
random wait between zero and the cap), so that many nodes throttled at once do not retry in
step. When the attempts are spent the caller gets :class:`storage.errors.Unavailable`.
Everything else (a failed condition, a cancelled transaction, a validation error) is not a
transient fault and goes back to the caller at once, which maps it to a domain outcome.

botocore's own retries are switched off for the client (see ``store.py``), so this is the only
retry loop and its bound is the real one.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from storage.errors import StorageError, Unavailable

T = TypeVar("T")

THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)
"""Error codes that mean "too fast": the request did nothing."""

TRANSIENT_CODES = frozenset(
    {
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "TransactionConflictException",
        "TransactionInProgressException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
"""Error codes of faults on AWS's side that a later attempt may not meet."""

CANCELLATION_RETRYABLE = frozenset(
    {"TransactionConflict", "ProvisionedThroughputExceeded", "ThrottlingError"}
)
"""Reasons in a cancelled transaction that a fresh attempt may get past."""


def error_code(exc: BaseException) -> str | None:
    """Return the DynamoDB error code of ``exc``, or None when it is no service error."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code")
        return code if isinstance(code, str) else None
    return None


def is_retryable(exc: BaseException) -> bool:
    """Tell whether another attempt of the same call may succeed."""
    code = error_code(exc)
    if code is not None:
        return code in THROTTLING_CODES or code in TRANSIENT_CODES
    # Timeouts and broken connections: the request may or may not have been applied, which is
    # why every non-idempotent write carries an idempotency token or checks its own marker.
    return isinstance(exc, HTTPClientError | BotoConnectionError | TimeoutError | OSError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many attempts, and the capped, jittered exponential wait between them."""

    attempts: int
    base: float
    cap: float

    def delay(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """Return the wait before retry number ``retry`` (0 for the first retry)."""
        ceiling = min(self.cap, self.base * 2.0 ** min(retry, 30))
        return rand() * ceiling


Sleep = Callable[[float], Awaitable[object]]


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    policy: RetryPolicy,
    timeout: float,
    sleep: Sleep = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> T:
    """Run ``call`` until it succeeds, fails for good, or ``policy.attempts`` are spent.

    Each attempt is bounded by ``timeout`` seconds. ``what`` names the operation in the
    :class:`Unavailable` raised at the end.
    """
    last: BaseException | None = None
    for attempt in range(policy.attempts):
        if attempt:
            await sleep(policy.delay(attempt - 1, rand))
        try:
            async with asyncio.timeout(timeout):
                return await call()
        except (ClientError, HTTPClientError, BotoConnectionError, TimeoutError, OSError) as exc:
            if not is_retryable(exc):
                raise
            last = exc
    code = error_code(last) if last is not None else None
    reason = code or type(last).__name__
    raise Unavailable(f"DynamoDB {what} failed {policy.attempts} times ({reason})") from last


def rejected(what: str, exc: ClientError) -> StorageError:
    """Return the error for a call DynamoDB refused for good (not a failed condition)."""
    code = error_code(exc) or "unknown"
    if code == "ResourceNotFoundException":
        return Unavailable(
            f"DynamoDB {what}: table missing (run `python -m storage.dynamodb create-tables`)"
        )
    return StorageError(f"DynamoDB {what} rejected: {code}")
