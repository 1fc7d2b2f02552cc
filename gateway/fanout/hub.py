"""The hub: which local subscribers want which channel, and delivery to them.

An event is encoded once by the publishing handler, carried once per node by the broker, and
framed once per node here; every local subscriber then gets the same bytes through a
synchronous ``deliver`` call that never awaits a socket. The node subscribes to a broker
channel when its first local subscriber arrives and unsubscribes when the last one leaves.

Invariant: a subscriber's ``deliver`` never changes the hub synchronously (a slow consumer
schedules its own close), so delivery can iterate the live subscriber set without copying it.

Each stored event handed to this node's subscribers is observed once (not once per socket) in
``moosic_delivery_lag_seconds``: the wall clock now minus the event's store time, which the
broker carries beside the payload. Events a gap fill fetched are observed too (their store
time read from the payload's ``ts``: that path is rare), so late events are in the histogram;
a recovering client's replay is not (it was not live).

Ephemeral pushes (offset 0) carry, in the epoch's place, the region they were made in when that
is not this one ("" when it is: see ``gateway/regions``); a tap (:meth:`Hub.tap`: a region
link's home side) gets each with that origin, so it can leave out the region it came from.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, Protocol

import orjson

from gateway.fanout.broker import Broker, Recent
from gateway.fanout.presence import PresenceTracker
from gateway.metrics import Metrics
from gateway.ws.frames import text_frame
from handlers.errors import SERVER_BUSY, OpError
from storage.errors import Unavailable

log = logging.getLogger(__name__)


class Backfill(Protocol):
    """Where missing events come from: the recent window, else the store."""

    def __call__(
        self, channel: str, since: int, limit: int, *, outage: bool = False
    ) -> Awaitable[tuple[str, list[tuple[int, bytes]]]]:
        """(epoch, [(offset, payload)...]) after ``since``; ``outage``: the store decides
        where the channel ends (the window may have missed its last events)."""
        ...


MAX_HELD = 10_000
"""Events held per channel while a gap fills, or per subscriber while it recovers."""
GAP_WAIT = 0.05
"""Seconds an out-of-order event waits for the missing ones before they are fetched."""

CONTROL_CHANNEL = "__control"
"""Node-to-node commands; no client channel can have this name (no kind prefix)."""
INTERNAL_PREFIXES = ("__", "~")
"""Channels of the gateway's own, never counted for presence."""


class Publisher:
    """The node's publishes: counted in ``moosic_events_published_total``, carried by the
    broker. The hub publishes through one; the presence tracker and the hot counters, built
    before the hub and handed to it, through another on the same broker."""

    __slots__ = ("_broker", "_metrics")

    def __init__(self, broker: Broker, metrics: Metrics) -> None:
        self._broker = broker
        self._metrics = metrics

    async def __call__(
        self, channel: str, payload: bytes, offset: int = 0, epoch: str = "", stored_at: int = 0
    ) -> None:
        self._metrics.events_published += 1
        await self._broker.publish(channel, payload, offset, epoch, stored_at)


class Subscriber(Protocol):
    def deliver(self, frame: bytes) -> None:
        """Take one encoded frame; must not block and must not change the hub synchronously."""
        ...


class Tap(Protocol):
    def push(self, payload: bytes, origin: str) -> None:
        """Take one ephemeral push of the channel and the region it was made in ("" : this
        one); must not block and must not change the hub synchronously."""
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

    def lagged(self) -> None:
        """Too many events arrived while it was recovering: close it as a slow consumer."""
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

    def disconnect(self, code: int, reason: str) -> None:
        """Close on the server's word (the server API) with ``code`` and ``reason``."""
        ...


class _Watch:
    """A long-poll waiter: wakes on the channel's next event."""

    __slots__ = ("_event", "outcome", "waited")

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.waited = 0.0
        """Seconds spent in :meth:`wait`, all calls together."""
        self.outcome: str | None = None
        """How the last wait ended: ``woken`` or ``timeout`` (None: it never waited)."""

    def deliver(self, frame: bytes) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            self.outcome = "timeout"
            return False
        finally:
            self.waited += time.monotonic() - started
        self.outcome = "woken"
        self._event.clear()
        return True


class _Channel:
    """What this node knows of one channel it has subscribers for."""

    __slots__ = (
        "based",
        "epoch",
        "filling",
        "held",
        "last",
        "pending",
        "refill",
        "starting",
        "subscribers",
        "taps",
        "users",
    )

    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self.pending: dict[Member, list[tuple[int, bytes]] | None] | None = None
        """Subscribers still recovering, with the frames held for them (None: too many)."""
        self.starting: asyncio.Future[None] | None = None
        self.epoch = ""
        self.last = 0
        """The last offset delivered here, in order (0: none yet)."""
        self.held: dict[int, tuple[bytes, int]] | None = None
        """Events that arrived after a gap (payload, store time), by offset, waiting for the
        gap to fill."""
        self.filling = False
        self.refill = False
        """A broker outage ended while a fill was running: fill again after it."""
        self.based = False
        """True once a subscriber's position gave ``last`` a known starting point."""
        self.users: dict[str, int] | None = None
        """Local subscriptions per user, for channel presence (client channels only)."""
        self.taps: set[Tap] | None = None
        """Who gets the channel's ephemeral pushes with their origin (:meth:`Hub.tap`)."""

    def add(self, subscriber: Subscriber, *, pending: bool) -> None:
        if pending:
            if self.pending is None:
                self.pending = {}
            self.pending[subscriber] = []  # type: ignore[index]
        else:
            self.subscribers.add(subscriber)


class Hub:
    """Local subscriptions of one node, on top of a broker shared by all nodes."""

    def __init__(
        self,
        broker: Broker,
        metrics: Metrics,
        *,
        max_watchers: int,
        heartbeat: float,
        backfill: Backfill | None = None,
        presence: PresenceTracker | None = None,
    ) -> None:
        """``backfill``: where missing events come from (None: gaps are not filled);
        ``presence``: told about local joins and leaves, started and closed with the
        hub (None: no presence)."""
        self.broker = broker
        self._publish = Publisher(broker, metrics)
        self._heartbeat = heartbeat
        self._metrics = metrics
        self._lag = metrics.histogram("delivery_lag")
        self._longpolls = metrics.family("longpoll_wait")
        self._channels: dict[str, _Channel] = {}
        self._backfill = backfill
        self.presence = presence
        self._members: dict[str, set[Member]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watchers = 0
        self._no_members = asyncio.Event()
        self._no_members.set()
        self._max_watchers = max_watchers

    async def start(self) -> None:
        await self.broker.start(self._on_broker_message, self._on_reconnected)
        await self.broker.subscribe(CONTROL_CHANNEL)
        self.spawn(self._heartbeats())
        if self.presence is not None:
            self.presence.start()

    async def close(self) -> None:
        for member in self.all_members():
            member.abort()
        if self.presence is not None:
            await self.presence.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.broker.close()

    async def _heartbeats(self) -> None:
        """One timer per node instead of one per socket: every interval, visit every member."""
        while True:
            await asyncio.sleep(self._heartbeat)
            for member in self.all_members():
                member.heartbeat()

    async def broker_ready(self) -> bool:
        return await self.broker.ping()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a background job owned by the hub (cancelled at close)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- members ---------------------------------------------------------------------------

    def add_member(self, member: Member) -> None:
        self._no_members.clear()
        members = self._members.get(member.user_id)
        if members is None:
            members = self._members[member.user_id] = set()
            if self.presence is not None:
                self.presence.user_up(member.user_id)
        members.add(member)

    def remove_member(self, member: Member) -> None:
        members = self._members.get(member.user_id)
        if members is not None:
            members.discard(member)
            if not members:
                del self._members[member.user_id]
                if self.presence is not None:
                    self.presence.user_down(member.user_id)
                if not self._members:
                    self._no_members.set()

    def _count_user(
        self, channel: str, state: _Channel, subscriber: Subscriber, delta: int
    ) -> None:
        """Keep per-user subscription counts of client channels; report first and last ones."""
        user = getattr(subscriber, "user_id", None)
        if user is None or channel.startswith(INTERNAL_PREFIXES):
            return
        users = state.users
        if users is None:
            users = state.users = {}
        count = users.get(user, 0) + delta
        if count > 0:
            users[user] = count
        else:
            users.pop(user, None)
        if self.presence is not None:
            if delta > 0 and count == 1:
                self.presence.joined(channel, user)
            elif delta < 0 and count == 0:
                self.presence.left(channel, user)

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

    def members_of(self, user_id: str) -> list[Member]:
        """The user's connections on this node."""
        return list(self._members.get(user_id, ()))

    # -- subscriptions ---------------------------------------------------------------------

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    async def subscribe(
        self, channel: str, subscriber: Subscriber, *, pending: bool = False
    ) -> None:
        """Add a local subscriber; the first one subscribes the node through the broker.

        A ``pending`` subscriber gets nothing yet: its events are held until :meth:`activate`,
        so that a reply and a replay can go out first, in order.
        """
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel()
            state.add(subscriber, pending=pending)
            started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            state.starting = started
            try:
                await self.broker.subscribe(channel)
            except BaseException:
                # Nobody on this node gets the channel: undo for every waiter, then tell them.
                self._channels.pop(channel, None)
                self.broker.unsubscribe(channel)
                started.set_exception(Unavailable(f"could not subscribe the node to {channel}"))
                started.exception()  # mark retrieved: waiters, if any, raise it themselves
                raise
            else:
                started.set_result(None)
            finally:
                state.starting = None
            self._count_user(channel, state, subscriber, +1)
            return
        state.add(subscriber, pending=pending)
        if state.starting is not None:
            await asyncio.shield(state.starting)
        self._count_user(channel, state, subscriber, +1)

    def activate(self, channel: str, member: Member, after: int, epoch: str) -> None:
        """Make a pending subscriber live: write what was held for it past offset ``after``."""
        state = self._channels.get(channel)
        if state is None or state.pending is None or member not in state.pending:
            return
        held = state.pending.pop(member)
        if not state.pending:
            state.pending = None
        if held is None:
            member.lagged()
            return
        for offset, frame in held:
            if offset == 0 or offset > after:
                member.deliver(frame)
        state.subscribers.add(member)
        if not state.epoch and not state.based:
            # No event seen on this node yet: the subscriber's position (0 for a channel with
            # no event at all) is the baseline, so even the channel's first events are put in
            # order if they arrive out of it.
            state.epoch, state.last, state.based = epoch, after, True

    def unsubscribe(self, channel: str, subscriber: Subscriber) -> None:
        """Remove a local subscriber; the last one unsubscribes the node."""
        state = self._channels.get(channel)
        if state is None:
            return
        if subscriber in state.subscribers or (state.pending and subscriber in state.pending):
            self._count_user(channel, state, subscriber, -1)
        state.subscribers.discard(subscriber)
        if state.pending is not None:
            state.pending.pop(subscriber, None)  # type: ignore[call-overload]
            if not state.pending:
                state.pending = None
        if not state.subscribers and state.pending is None and state.starting is None:
            del self._channels[channel]
            self.broker.unsubscribe(channel)

    def tap(self, channel: str, tap: Tap) -> None:
        """Give ``tap`` the channel's ephemeral pushes with their origin region; the channel
        must have a subscriber on this node (the tap's owner subscribes first)."""
        state = self._channels.get(channel)
        if state is None:
            raise ValueError(f"{channel} has no subscriber on this node")
        if state.taps is None:
            state.taps = set()
        state.taps.add(tap)

    def untap(self, channel: str, tap: Tap) -> None:
        state = self._channels.get(channel)
        if state is not None and state.taps is not None:
            state.taps.discard(tap)
            if not state.taps:
                state.taps = None

    def deliver_push(self, channel: str, payload: bytes, origin: str) -> None:
        """Hand an ephemeral push that came from another region (``origin``) to this node's
        subscribers of the channel only: every node with subscribers of it gets its own copy
        over its own region link, so the push does not cross the region's broker."""
        self._on_broker_message(channel, 0, origin, payload)

    @asynccontextmanager
    async def watch(self, channel: str) -> AsyncIterator[_Watch]:
        """Subscribe a long-poll waiter for the duration of the block (bounded per node).

        A waiter that waited is observed in ``moosic_longpoll_wait_seconds`` when the block
        ends: its seconds in ``wait``, by how the last wait ended (``woken``, ``timeout``).
        """
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
            if watcher.outcome is not None:
                self._longpolls.observe(watcher.waited, watcher.outcome)

    # -- publishing and delivery -----------------------------------------------------------

    async def publish(
        self, channel: str, payload: bytes, offset: int = 0, epoch: str = "", stored_at: int = 0
    ) -> None:
        await self._publish(channel, payload, offset, epoch, stored_at)

    async def recent(self, channel: str, since: int, limit: int) -> Recent | None:
        return await self.broker.recent(channel, since, limit)

    async def kick(self, user_id: str, channel: str, reason: str) -> None:
        command = orjson.dumps({"kick": user_id, "channel": channel, "reason": reason})
        await self.broker.publish(CONTROL_CHANNEL, command)

    async def disconnect(self, user_id: str, code: int, reason: str) -> None:
        """Close every socket of ``user_id`` on every node (this one included, through the
        broker like the others) with ``code`` and ``reason``."""
        command = orjson.dumps({"disconnect": user_id, "code": code, "reason": reason})
        await self.broker.publish(CONTROL_CHANNEL, command)

    def channels_snapshot(self, limit: int) -> list[tuple[str, int]]:
        """Up to ``limit`` of this node's channels with their local subscriber counts, the
        most subscribed first (long-poll waiters count; recovering subscribers too)."""
        counts = [
            (name, len(state.subscribers) + len(state.pending or ()))
            for name, state in self._channels.items()
        ]
        counts.sort(key=lambda item: (-item[1], item[0]))
        return counts[:limit]

    def _on_broker_message(
        self, channel: str, offset: int, epoch: str, payload: bytes, stored_at: int = 0
    ) -> None:
        if channel == CONTROL_CHANNEL:
            self._on_control(payload)
            return
        state = self._channels.get(channel)
        if state is None:
            return
        if offset == 0:  # ephemeral: no order to keep; the epoch's place holds its origin
            self._fan_out(state, 0, payload)
            if state.taps:
                for tap in state.taps:
                    tap.push(payload, epoch)
            return
        if epoch != state.epoch:
            if not state.epoch and state.based:
                state.epoch = epoch  # the channel's first epoch: the baseline still holds
            else:
                # First event on a node that had no baseline, or the channel's history was
                # reset: start from here.
                state.epoch, state.last, state.held = epoch, offset - 1, None
        if offset <= state.last:
            self._metrics.duplicates_dropped += 1
            return
        if offset == state.last + 1:
            self._fan_out(state, offset, payload, stored_at)
            state.last = offset
            if state.held:
                self._release_held(state)
            return
        # A gap: hold this event until the missing ones arrive or are fetched.
        if state.held is None:
            state.held = {}
        state.held[offset] = (payload, stored_at)
        if len(state.held) > MAX_HELD:
            self._skip_gap(channel, state)
        elif not state.filling:
            state.filling = True
            self.spawn(self._fill_gap(channel, state, wait=GAP_WAIT))

    def _fan_out(self, state: _Channel, offset: int, payload: bytes, stored_at: int = 0) -> None:
        frame = text_frame(payload)
        subscribers = state.subscribers
        for subscriber in subscribers:
            subscriber.deliver(frame)
        self._metrics.deliveries += len(subscribers)
        if stored_at and subscribers:
            # Once per event per node; a clock behind the storing node's reads as 0.
            lag = time.time() - stored_at * 0.001
            self._lag.observe(lag if lag > 0.0 else 0.0)  # noqa: FURB136 (max() costs 60 ns)
        if state.pending:
            for member, held in state.pending.items():
                if held is not None:
                    if len(held) < MAX_HELD:
                        held.append((offset, frame))
                    else:
                        state.pending[member] = None  # too much while recovering: it lags

    def _release_held(self, state: _Channel) -> None:
        held = state.held
        assert held is not None
        for offset in [o for o in held if o <= state.last]:
            del held[offset]  # already delivered by a gap fill
            self._metrics.duplicates_dropped += 1
        while state.last + 1 in held:
            state.last += 1
            self._fan_out(state, state.last, *held.pop(state.last))
        if not held:
            state.held = None

    def _skip_gap(self, channel: str, state: _Channel) -> None:
        """Give up on missing events: deliver what is held, in order, and move on."""
        held = state.held or {}
        missing = max(held, default=state.last) - state.last - len(held)
        log.warning("channel %s: %d events could not be found; skipping them", channel, missing)
        self._metrics.gap_events_skipped += missing
        for offset in sorted(held):
            if offset > state.last:
                self._fan_out(state, offset, *held[offset])
                state.last = offset
        state.held = None

    async def _fill_gap(
        self, channel: str, state: _Channel, *, wait: float, outage: bool = False
    ) -> None:
        """Fetch missing events (recent window, then store) and deliver them in order."""
        try:
            if wait:
                await asyncio.sleep(wait)  # the missing event may simply be late
            while self._channels.get(channel) is state and (state.held or not wait):
                if self._backfill is None:
                    break
                epoch, events = await self._backfill(channel, state.last, MAX_HELD, outage=outage)
                if epoch != state.epoch and not state.epoch and state.based and epoch:
                    state.epoch = epoch  # the channel's first events came during the outage
                if epoch != state.epoch:
                    break
                before = state.last
                for offset, payload in events:
                    if offset == state.last + 1:
                        self._fan_out(state, offset, payload, _stored_at(payload))
                        state.last = offset
                        self._metrics.gap_events_filled += 1
                if state.held:
                    self._release_held(state)
                if state.last == before:
                    break
        except (Unavailable, OSError, TimeoutError) as exc:
            log.warning("channel %s: could not fetch missing events (%s)", channel, exc)
        finally:
            state.filling = False
            live = self._channels.get(channel) is state
            if state.held and live:
                self._skip_gap(channel, state)
            if state.refill and live:
                state.refill = False
                self._refill(channel, state)

    def _refill(self, channel: str, state: _Channel) -> None:
        state.filling = True
        self.spawn(self._fill_gap(channel, state, wait=0.0, outage=True))

    def _on_reconnected(self) -> None:
        """After a broker outage, look for events every live channel may have missed.

        Called once the node's subscriptions are in force again: an event published after
        that comes by pub/sub, one published before is in the window or the store.
        """
        for channel, state in self._channels.items():
            if channel == CONTROL_CHANNEL or not (state.epoch or state.based):
                continue  # nothing delivered here yet: a subscriber's own catch-up covers it
            if state.filling:
                state.refill = True  # the fill under way may have read before the outage ended
            else:
                self._refill(channel, state)
        if self.presence is not None:
            self.spawn(self.presence.resync())

    def _on_control(self, payload: bytes) -> None:
        try:
            command = orjson.loads(payload)
            if "disconnect" in command:
                self._on_disconnect(command["disconnect"], command["code"], command["reason"])
                return
            user_id, channel, reason = command["kick"], command["channel"], command["reason"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("ignoring a malformed control message: %r", payload[:200])
            return
        for member in list(self._members.get(user_id, ())):
            member.kicked(channel, reason)

    def _on_disconnect(self, user_id: object, code: object, reason: object) -> None:
        if not isinstance(user_id, str) or not isinstance(code, int) or not isinstance(reason, str):
            raise TypeError("a disconnect names a user, a close code and a reason")
        for member in list(self._members.get(user_id, ())):
            member.disconnect(code, reason)


def _stored_at(payload: bytes) -> int:
    """A fetched event's store time (its ``ts``, ms), or 0 when it has none (gap fills only)."""
    try:
        ts = orjson.loads(payload).get("ts")
    except (orjson.JSONDecodeError, AttributeError):
        return 0
    return ts if isinstance(ts, int) and not isinstance(ts, bool) else 0
