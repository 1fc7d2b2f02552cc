"""Settings of the DynamoDB backend, one frozen value built by the gateway at start-up."""

from __future__ import annotations

import re
from dataclasses import dataclass

# DynamoDB table names: 3-255 of these characters; the longest suffix added is "refresh_tokens".
_PREFIX = re.compile(r"[A-Za-z0-9_.-]{0,200}")


@dataclass(frozen=True, slots=True)
class DynamoDBConfig:
    """Where the tables are and how hard to try.

    Credentials come from the default AWS chain (environment, profile, instance role) unless
    ``access_key_id`` and ``secret_access_key`` are both given; DynamoDB Local accepts any pair.
    """

    region: str = "us-east-1"
    endpoint_url: str | None = None
    """``None`` for AWS; ``http://127.0.0.1:8000`` style for DynamoDB Local."""
    table_prefix: str = "moosic-"
    """Prepended to every table name (``moosic-messages``...), so stages share an account."""
    dax_endpoint: str | None = None
    """DAX cluster discovery endpoint (``dax://...`` or ``daxs://...``); ``None``: no DAX."""
    access_key_id: str | None = None
    secret_access_key: str | None = None

    connect_timeout: float = 1.0
    """Seconds to open a connection to DynamoDB."""
    read_timeout: float = 2.0
    """Seconds to wait for one DynamoDB response."""
    call_timeout: float = 3.0
    """Upper bound on one attempt, connection-pool wait included."""
    max_attempts: int = 6
    """Attempts per call for throttling and transient faults, the first one included."""
    backoff_base: float = 0.02
    """First retry waits up to this many seconds; doubles per attempt (full jitter)."""
    backoff_cap: float = 1.0
    """No single retry waits longer than this."""
    max_connections: int = 64
    """HTTP connections to DynamoDB per process."""

    dax_timeout: float = 0.25
    """Seconds a DAX read may take before the read falls back to DynamoDB."""
    dax_max_workers: int = 8
    """Threads running the (synchronous) DAX client; DAX reads beyond them wait or fall back."""

    channel_cache_size: int = 10_000
    """Channels whose head (last offset, id, epoch) a node remembers, to append in one call."""
    refresh_token_grace: int = 7 * 86_400
    """Seconds an expired refresh token is kept (answering EXPIRED) before TTL may delete it."""
    revoked_family_ttl: int = 400 * 86_400
    """Seconds a revoked token family is remembered; must exceed the refresh-token lifetime."""

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be positive"
            for name in (
                "connect_timeout",
                "read_timeout",
                "call_timeout",
                "max_attempts",
                "backoff_base",
                "backoff_cap",
                "max_connections",
                "dax_timeout",
                "dax_max_workers",
                "channel_cache_size",
                "refresh_token_grace",
                "revoked_family_ttl",
            )
            if getattr(self, name) <= 0
        ]
        if not _PREFIX.fullmatch(self.table_prefix):
            problems.append("table_prefix may hold only letters, digits, '_', '-' and '.'")
        if not self.region:
            problems.append("region must not be empty")
        if (self.access_key_id is None) != (self.secret_access_key is None):
            problems.append("access_key_id and secret_access_key go together")
        if problems:
            raise ValueError("; ".join(problems))
