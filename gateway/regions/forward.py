"""Publishes sent to the channel's home region, and history read there (docs/regions.md).

One HTTP call per publish to ``POST /server/v1/regions/publish`` of the home, with this
region's link key. At most ``concurrency`` calls are in flight per node (more wait for a slot);
each call, its wait for a slot included, is bounded by ``timeout``. An unreachable home, a
timeout, or an answer that is not the home's own verdict (5xx, a refused key, a missing route)
is ``unavailable`` (retryable): the client retries with the same ``client_msg_id``, which the
home's store makes idempotent. A 4xx verdict of the home (``message_too_large``...) is passed on
with its code.

A ``history`` page of a remote-home channel that this node does not follow live (the relay's
:meth:`gateway.regions.relay.Relay.is_fresh`) is read from the home's server API
(``GET /server/v1/channels/{channel}/messages``), under the same bounds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from handlers.errors import ALL_KINDS, UNAVAILABLE, ErrorKind, OpError

log = logging.getLogger(__name__)

PUBLISH_PATH = "/server/v1/regions/publish"
HISTORY_PATH = "/server/v1/channels/{channel}/messages"
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
        self.fresh: Callable[[str], bool] = lambda channel: False
        """Whether this region's copy of a channel is current (the relay's word; set by the
        app): then history is read locally."""
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

    def is_fresh(self, channel: str) -> bool:
        return self.fresh(channel)

    async def history(
        self, home: str, channel: str, limit: int, before: str | None
    ) -> dict[str, Any]:
        """A page of the channel's history as its home has it (the server API's history)."""
        query: dict[str, str] = {"limit": str(limit)}
        if before is not None:
            query["before"] = before
        url = self._urls[home] + HISTORY_PATH.format(channel=quote(channel, safe=":"))
        return await self._call(home, "GET", url, None, query, verdicts={"not_found"})

    async def publish(
        self, home: str, channel: str, sender: str, body: bytes, client_msg_id: str | None
    ) -> dict[str, Any]:
        request = orjson.dumps(
            {
                "channel": channel,
                "sender": sender,
                "data": orjson.Fragment(body),
                "client_msg_id": client_msg_id,
            }
        )
        return await self._call(home, "POST", self._urls[home] + PUBLISH_PATH, request)

    async def _call(
        self,
        home: str,
        method: str,
        url: str,
        body: bytes | None,
        query: dict[str, str] | None = None,
        *,
        verdicts: frozenset[str] | set[str] = frozenset(),
    ) -> dict[str, Any]:
        session = self._session
        if session is None:
            raise OpError(UNAVAILABLE, "this node is not linked to other regions yet; retry")
        try:
            async with (
                asyncio.timeout(self._timeout),
                self._slots,
                session.request(
                    method, url, data=body, params=query, headers=self._headers
                ) as response,
            ):
                status, answer = response.status, await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.failed += 1
            log.info("calling %s failed: %s", home, exc.__class__.__name__)
            raise OpError(
                UNAVAILABLE, f"the channel's home region ({home}) cannot be reached; retry"
            ) from None
        return self._answer(home, status, answer, verdicts)

    def _answer(
        self, home: str, status: int, answer: bytes, verdicts: frozenset[str] | set[str]
    ) -> dict[str, Any]:
        try:
            found = orjson.loads(answer)
        except orjson.JSONDecodeError:
            found = None
        if status in (200, 201) and isinstance(found, dict):
            self.forwarded += 1
            return found
        kind = _KINDS.get(found.get("code", "")) if isinstance(found, dict) else None
        unusable = {"invalid_api_key", "not_found"} - set(verdicts)
        if kind is None or status >= 500 or kind.code in unusable:
            # Not a verdict on this message: the home is down, misconfigured or refused the
            # link's key. Logged, since only an operator can fix the last two.
            self.failed += 1
            log.warning("home region %s answered %d to a forwarded publish", home, status)
            raise OpError(
                UNAVAILABLE, f"the channel's home region ({home}) cannot take it now; retry"
            )
        raise OpError(kind, str(found.get("message", kind.code)))
