"""Ephemeral pushes (offset 0: typing, read receipts, join/leave) waiting for one region link.

Both sides of a link keep one :class:`PushQueue`: the relay for the pushes made in its region on
channels homed at the other end, the home for the pushes of the channels the link follows. A
push is best-effort by protocol (never stored, never replayed), so the queue is bounded and
coalesced rather than lossless:

- a push that says the same thing as one still queued replaces it in its place: the same
  user's ``typing`` in a channel, the same user's ``read`` (the newer offset wins), the same
  user's ``join``/``leave`` (the newer state wins); each replacement is counted;
- at most ``limit`` pushes wait; when full, the new one is dropped (the newest: the queued
  ones are older and will be written first) and counted;
- one push is written at a time, through the link's own send lock, so a stored ``events``
  frame waits at most for the one push frame being written, never for a queue of them.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

import msgspec

MAX_QUEUED = 256
"""Pushes waiting per link (each side): a burst beyond is dropped, counted."""

_REPLACES = {"typing": "typing", "read": "read", "join": "member", "leave": "member"}
"""The ops a newer push of the same user in the same channel replaces, by what they say."""


class _Said(msgspec.Struct):
    op: str = ""
    user: str = ""


_SAID = msgspec.json.Decoder(_Said)


@dataclass(slots=True)
class PushStats:
    sent: int = 0
    """Pushes written on a link."""
    received: int = 0
    """Pushes taken from a link into the local fan-out."""
    coalesced: int = 0
    """Queued pushes replaced by a newer one saying the same."""
    dropped: int = 0
    """Pushes not sent: the queue was full, the link was down, or one did not fit a frame."""


class PushQueue:
    """Pushes of one link, oldest first, coalesced by what they say, at most ``limit``."""

    def __init__(self, stats: PushStats, limit: int = MAX_QUEUED) -> None:
        self._stats = stats
        self._limit = limit
        self._items: dict[tuple[str, str, str], tuple[str, bytes, str]] = {}
        self._unique = itertools.count()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, channel: str, payload: bytes, origin: str = "") -> None:
        try:
            said = _SAID.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            said = _Said()
        kind = _REPLACES.get(said.op)
        key = (
            (channel, kind, said.user) if kind and said.user else ("", "", str(next(self._unique)))
        )
        if key in self._items:
            self._stats.coalesced += 1
        elif len(self._items) >= self._limit:
            self._stats.dropped += 1
            return
        self._items[key] = (channel, payload, origin)
        self._ready.set()

    async def get(self) -> tuple[str, bytes, str]:
        """The oldest (channel, payload, origin), waiting for one."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        key = next(iter(self._items))
        return self._items.pop(key)

    def clear(self) -> None:
        """The link is gone: what waits is stale (counted as dropped)."""
        self._stats.dropped += len(self._items)
        self._items.clear()
