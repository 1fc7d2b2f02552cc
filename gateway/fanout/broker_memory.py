"""In-process broker: one node, no external service; recent events kept in memory."""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable

from gateway.fanout.broker import Deliver, Recent


class RecentWindows:
    """Per channel, the last ``per_channel`` events by offset; at most ``channels`` channels.

    Events may arrive slightly out of offset order (concurrent publishes), so each window is
    kept sorted. The least recently published channel is forgotten first.
    """

    def __init__(self, *, per_channel: int, channels: int) -> None:
        self._per_channel = per_channel
        self._channels = channels
        self._windows: OrderedDict[str, tuple[str, list[int], list[bytes]]] = OrderedDict()

    def add(self, channel: str, offset: int, epoch: str, payload: bytes) -> None:
        window = self._windows.get(channel)
        if window is None or window[0] != epoch:
            window = (epoch, [], [])
            self._windows[channel] = window
            if len(self._windows) > self._channels:
                self._windows.popitem(last=False)
        else:
            self._windows.move_to_end(channel)
        _epoch, offsets, payloads = window
        at = bisect.bisect_left(offsets, offset)
        if at < len(offsets) and offsets[at] == offset:
            return
        offsets.insert(at, offset)
        payloads.insert(at, payload)
        if len(offsets) > self._per_channel:
            del offsets[0]
            del payloads[0]

    def get(self, channel: str, since: int, limit: int) -> Recent | None:
        window = self._windows.get(channel)
        if window is None or not window[1]:
            return None
        epoch, offsets, payloads = window
        at = bisect.bisect_right(offsets, since)
        events = list(zip(offsets[at : at + limit], payloads[at : at + limit], strict=True))
        return Recent(epoch=epoch, last=offsets[-1], first=offsets[0], events=events)


class MemoryBroker:
    """Deliver every publish straight back to this node's hub."""

    def __init__(self, *, recent_per_channel: int = 256, recent_channels: int = 10_000) -> None:
        self._deliver: Deliver | None = None
        self._recent = RecentWindows(per_channel=recent_per_channel, channels=recent_channels)

    async def start(self, deliver: Deliver, reconnected: Callable[[], None]) -> None:
        self._deliver = deliver

    async def close(self) -> None:
        self._deliver = None

    async def subscribe(self, channel: str) -> None:
        return None

    def unsubscribe(self, channel: str) -> None:
        return None

    async def publish(
        self, channel: str, payload: bytes, offset: int = 0, epoch: str = "", stored_at: int = 0
    ) -> None:
        if offset:
            self._recent.add(channel, offset, epoch, payload)
        if self._deliver is not None:
            self._deliver(channel, offset, epoch, payload, stored_at)

    async def recent(self, channel: str, since: int, limit: int) -> Recent | None:
        return self._recent.get(channel, since, limit)

    async def ping(self) -> bool:
        return self._deliver is not None
