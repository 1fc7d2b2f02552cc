"""Publishes sent to the channel's home region (docs/regions.md, "Publishing").

One HTTP call per publish to ``POST /server/v1/regions/publish`` of the home, with this
region's link key. At most ``concurrency`` calls are in flight per node (more wait for a slot);
each call, its wait for a slot included, is bounded by ``timeout``. An unreachable home, a
timeout, or an answer that is not the home's own verdict (5xx, a refused key, a missing route)
is ``unavailable`` (retryable): the client retries with the same ``client_msg_id``, which the
home's store makes idempotent. A 4xx verdict of the home (``message_too_large``...) is passed on
with its code.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import orjson

from handlers.errors import ALL_KINDS, UNAVAILABLE, ErrorKind, OpError

log = logging.getLogger(__name__)

PUBLISH_PATH = "/server/v1/regions/publish"
_KINDS: dict[str, ErrorKind] = {kind.code: kind for kind in ALL_KINDS}


class Forwarder:
    """:class:`handlers.ports.HomeForwarder` over HTTP; :meth:`start` before use."""

    def __init__(self, urls: dict[str, str], key: str, *, timeout: float, concurrency: int) -> None:
        self._urls = urls
        self._headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self._timeout = timeout
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None
        self.forwarded = 0
        self.failed = 0
        """Publishes answered ``unavailable`` because the home could not be reached in time."""

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._concurrency),
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def publish(
        self, home: str, channel: str, sender: str, body: bytes, client_msg_id: str | None
    ) -> dict[str, Any]:
        session = self._session
        if session is None:
            raise OpError(UNAVAILABLE, "this node is not linked to other regions yet; retry")
        request = orjson.dumps(
            {
                "channel": channel,
                "sender": sender,
                "data": orjson.Fragment(body),
                "client_msg_id": client_msg_id,
            }
        )
        url = self._urls[home] + PUBLISH_PATH
        try:
            async with (
                asyncio.timeout(self._timeout),
                self._slots,
                session.post(url, data=request, headers=self._headers) as response,
            ):
                status, answer = response.status, await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.failed += 1
            log.info("forwarding to %s failed: %s", home, exc.__class__.__name__)
            raise OpError(
                UNAVAILABLE, f"the channel's home region ({home}) cannot be reached; retry"
            ) from None
        return self._answer(home, status, answer)

    def _answer(self, home: str, status: int, answer: bytes) -> dict[str, Any]:
        try:
            found = orjson.loads(answer)
        except orjson.JSONDecodeError:
            found = None
        if status in (200, 201) and isinstance(found, dict):
            self.forwarded += 1
            return found
        kind = _KINDS.get(found.get("code", "")) if isinstance(found, dict) else None
        if kind is None or status >= 500 or kind.code in {"invalid_api_key", "not_found"}:
            # Not a verdict on this message: the home is down, misconfigured or refused the
            # link's key. Logged, since only an operator can fix the last two.
            self.failed += 1
            log.warning("home region %s answered %d to a forwarded publish", home, status)
            raise OpError(
                UNAVAILABLE, f"the channel's home region ({home}) cannot take it now; retry"
            )
        raise OpError(kind, str(found.get("message", kind.code)))
