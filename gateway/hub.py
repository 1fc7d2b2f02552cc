"""The hub: which local subscribers want which channel, and delivery to them.

An event is encoded once by the publishing handler, carried once per node by the broker, and
framed once per node here; every local subscriber then gets the same bytes through a
synchronous ``deliver`` call that never awaits a socket. The node subscribes to a broker
channel when its first local subscriber arrives and unsubscribes when the last one leaves.

Invariant: a subscriber's ``deliver`` never changes the hub synchronously (a slow consumer
schedules its own close), so delivery can iterate the live subscriber set without copying it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, Protocol

import orjson

from gateway.broker import Broker
from gateway.metrics import Metrics
from gateway.protocol import text_frame
from handlers.errors import SERVER_BUSY, OpError
from storage.errors import Unavailable

log = logging.getLogger(__name__)

CONTROL_CHANNEL = "__control"
"""Node-to-node commands; no client channel can have this name (no kind prefix)."""


class Subscriber(Protocol):
    def deliver(self, frame: bytes) -> None:
        """Take one encoded frame; must not block and must not change the hub synchronously."""
        ...


class Member(Subscriber, Protocol):
    """A subscriber that belongs to a user (a WebSocket connection)."""

    user_id: str

    def kicked(self, channel: str, reason: str) -> None:
        """Drop the subscription to ``channel`` on the server's word, telling the client why."""
        ...

    def shutdown(self) -> None:
        """Close for a node shutdown, telling the client to reconnect elsewhere."""
        ...

    def buffered_bytes(self) -> int:
        """Bytes written but not yet sent to the peer."""
        ...

    def heartbeat(self) -> None:
        """One liveness round: ping if quiet, drop if silent since the last ping."""
        ...

    def abort(self) -> None:
        """Drop the connection at once."""
        ...


class _Watch:
    """A long-poll waiter: wakes on the channel's next event."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def deliver(self, frame: bytes) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return False
        return True


class Hub:
    """Local subscriptions of one node, on top of a broker shared by all nodes."""

    def __init__(
        self, broker: Broker, metrics: Metrics, *, max_watchers: int, heartbeat: float
    ) -> None:
        self._broker = broker
        self._heartbeat = heartbeat
        self._metrics = metrics
        self._channels: dict[str, set[Subscriber]] = {}
        self._starting: dict[str, asyncio.Future[None]] = {}
        self._members: dict[str, set[Member]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watchers = 0
        self._no_members = asyncio.Event()
        self._no_members.set()
        self._max_watchers = max_watchers

    async def start(self) -> None:
        await self._broker.start(self._on_broker_message)
        await self._broker.subscribe(CONTROL_CHANNEL)
        self.spawn(self._heartbeats())

    async def close(self) -> None:
        for member in self.all_members():
            member.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._broker.close()

    async def _heartbeats(self) -> None:
        """One timer per node instead of one per socket: every interval, visit every member."""
        while True:
            await asyncio.sleep(self._heartbeat)
            for member in self.all_members():
                member.heartbeat()

    async def broker_ready(self) -> bool:
        return await self._broker.ping()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a background job owned by the hub (cancelled at close)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- members ---------------------------------------------------------------------------

    def add_member(self, member: Member) -> None:
        self._no_members.clear()
        self._members.setdefault(member.user_id, set()).add(member)

    def remove_member(self, member: Member) -> None:
        members = self._members.get(member.user_id)
        if members is not None:
            members.discard(member)
            if not members:
                del self._members[member.user_id]
                if not self._members:
                    self._no_members.set()

    @property
    def member_count(self) -> int:
        return sum(len(m) for m in self._members.values())

    def buffered_bytes(self) -> float:
        """Unsent bytes queued across this node's sockets (scraped, not on the hot path)."""
        return float(sum(m.buffered_bytes() for members in self._members.values() for m in members))

    async def wait_no_members(self, timeout: float) -> bool:
        """Wait until every member has left; False when ``timeout`` passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._no_members.wait()
        except TimeoutError:
            return False
        return True

    def all_members(self) -> list[Member]:
        return [m for members in self._members.values() for m in members]

    # -- subscriptions ---------------------------------------------------------------------

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    def subscriber_count(self, channel: str) -> int:
        return len(self._channels.get(channel, ()))

    async def subscribe(self, channel: str, subscriber: Subscriber) -> None:
        """Add a local subscriber; the first one subscribes the node through the broker."""
        subscribers = self._channels.get(channel)
        if subscribers is not None:
            subscribers.add(subscriber)
            starting = self._starting.get(channel)
            if starting is not None:
                await asyncio.shield(starting)
            return
        self._channels[channel] = {subscriber}
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._starting[channel] = started
        try:
            await self._broker.subscribe(channel)
        except BaseException:
            # Nobody on this node gets the channel: undo for every waiter, then tell them.
            self._channels.pop(channel, None)
            self._broker.unsubscribe(channel)
            started.set_exception(Unavailable(f"could not subscribe the node to {channel}"))
            started.exception()  # mark retrieved: waiters, if any, raise it themselves
            raise
        else:
            started.set_result(None)
        finally:
            del self._starting[channel]

    def unsubscribe(self, channel: str, subscriber: Subscriber) -> None:
        """Remove a local subscriber; the last one unsubscribes the node."""
        subscribers = self._channels.get(channel)
        if subscribers is None:
            return
        subscribers.discard(subscriber)
        if not subscribers and channel not in self._starting:
            del self._channels[channel]
            self._broker.unsubscribe(channel)

    @asynccontextmanager
    async def watch(self, channel: str) -> AsyncIterator[_Watch]:
        """Subscribe a long-poll waiter for the duration of the block (bounded per node)."""
        if self._watchers >= self._max_watchers:
            self._metrics.longpolls_rejected += 1
            raise OpError(SERVER_BUSY, "too many long polls are waiting on this node; retry")
        self._watchers += 1
        watcher = _Watch()
        try:
            await self.subscribe(channel, watcher)
            yield watcher
        finally:
            self._watchers -= 1
            self.unsubscribe(channel, watcher)

    # -- publishing and delivery -----------------------------------------------------------

    async def publish(self, channel: str, payload: bytes) -> None:
        self._metrics.events_published += 1
        await self._broker.publish(channel, payload)

    async def kick(self, user_id: str, channel: str, reason: str) -> None:
        command = orjson.dumps({"kick": user_id, "channel": channel, "reason": reason})
        await self._broker.publish(CONTROL_CHANNEL, command)

    def _on_broker_message(self, channel: str, payload: bytes) -> None:
        if channel == CONTROL_CHANNEL:
            self._on_control(payload)
            return
        subscribers = self._channels.get(channel)
        if not subscribers:
            return
        frame = text_frame(payload)
        for subscriber in subscribers:
            subscriber.deliver(frame)
        self._metrics.deliveries += len(subscribers)

    def _on_control(self, payload: bytes) -> None:
        try:
            command = orjson.loads(payload)
            user_id, channel, reason = command["kick"], command["channel"], command["reason"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("ignoring a malformed control message: %r", payload[:200])
            return
        for member in list(self._members.get(user_id, ())):
            member.kicked(channel, reason)
