"""Revoked login sessions: access tokens of a logged-out session stop working everywhere.

Access tokens carry their login session (``sid``: the refresh-token family). Logging out, or
reusing a refresh token, revokes the family in the store (no new tokens) *and* records the
session here, so the access tokens already issued stop working before they expire.

Every node keeps the revoked sessions in memory, so checking a token costs a dict lookup and no
round trip. An entry is needed only while a token of that session can still be valid: for the
access token lifetime plus the verification leeway; it is forgotten after that, which bounds
the list by the logouts of one token lifetime.

Across nodes, a revocation is appended to a Redis stream (trimmed to that same lifetime); every
node reads the stream's new entries every :data:`POLL_SECONDS` and, from start-up, the whole
(recent) stream. So a revoked session's tokens are refused on the revoking node at once and on
every other node within about a second, and a node that was cut off from Redis catches up when
it is back. Each node closes the revoked session's sockets as soon as it learns of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from storage.errors import Unavailable
from storage.redis.client import RedisClient
from storage.redis.resp import ConnectionLost, RespError

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
"""How often a node reads the other nodes' revocations from Redis."""
READ_BATCH = 1000


class Revocations:
    """:class:`handlers.ports.SessionRevoker`: in memory, shared through Redis when there is one."""

    def __init__(
        self,
        *,
        ttl: float,
        on_revoked: Callable[[str, str], None],
        redis: RedisClient | None = None,
        prefix: str = "moosic:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ttl = ttl
        self._on_revoked = on_revoked
        self._redis = redis
        self._key = prefix.encode() + b"revoked-sessions"
        self._clock = clock
        self._until: dict[str, float] = {}
        self._expiry: deque[tuple[float, str]] = deque()
        self._last_id = b"-"
        self._read_failed = False

    def __len__(self) -> int:
        return len(self._until)

    def is_revoked(self, session_id: str) -> bool:
        until = self._until.get(session_id)
        return until is not None and until > self._clock()

    async def revoke(self, session_id: str, user_id: str) -> None:
        """Refuse the session's tokens here at once, then tell the other nodes through Redis.

        Raises ``Unavailable`` when Redis does not take it (this node has it already): the
        caller answers ``unavailable`` and the client retries, which is harmless.
        """
        self._remember(session_id, user_id, self._clock() + self._ttl)
        if self._redis is None:
            return
        oldest_ms = int((self._clock() - self._ttl) * 1000)
        try:
            await self._redis.call(
                b"XADD",
                self._key,
                b"MINID",
                b"~",
                str(max(oldest_ms, 0)).encode(),
                b"*",
                b"s",
                session_id.encode(),
                b"u",
                user_id.encode(),
            )
        except (OSError, TimeoutError, ConnectionLost, RespError, Unavailable) as exc:
            raise Unavailable(f"could not share the revocation through Redis: {exc}") from exc

    def _remember(self, session_id: str, user_id: str, until: float) -> None:
        known = self._until.get(session_id)
        if known is not None and known >= until:
            return
        self._until[session_id] = until
        self._expiry.append((until, session_id))
        if known is None:
            self._on_revoked(session_id, user_id)

    def _forget_expired(self) -> None:
        now = self._clock()
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            until, session_id = expiry.popleft()
            if self._until.get(session_id) == until:
                del self._until[session_id]

    async def run(self) -> None:
        """Forget expired entries and, with Redis, read other nodes' revocations; forever."""
        while True:
            self._forget_expired()
            if self._redis is not None:
                await self.sync()
            await asyncio.sleep(POLL_SECONDS)

    async def sync(self) -> None:
        """Read every revocation appended to the stream since the last read."""
        assert self._redis is not None
        try:
            while True:
                start = b"-" if self._last_id == b"-" else b"(" + self._last_id
                entries = await self._redis.call(
                    b"XRANGE", self._key, start, b"+", b"COUNT", str(READ_BATCH).encode()
                )
                if not isinstance(entries, list) or not entries:
                    break
                now = self._clock()
                for entry_id, fields in entries:
                    self._last_id = bytes(entry_id)
                    values = dict(zip(fields[::2], fields[1::2], strict=True))
                    session, user = values.get(b"s"), values.get(b"u")
                    if session is None or user is None:
                        continue
                    until = int(entry_id.split(b"-")[0]) / 1000 + self._ttl
                    if until > now:
                        self._remember(session.decode(), user.decode(), until)
                if len(entries) < READ_BATCH:
                    break
        except (OSError, TimeoutError, ConnectionLost, RespError, Unavailable, ValueError) as exc:
            if not self._read_failed:
                log.warning("cannot read revoked sessions from Redis (%s); retrying", exc)
                self._read_failed = True
            return
        self._read_failed = False
