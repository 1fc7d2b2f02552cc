"""Subscribe, replay, go live: the one owner of bringing a subscriber up to date.

As Centrifuge's recovery sync, one unit decides what a subscriber missed and hands it over in
order, for the three callers that need it:

- a ``subscribe`` with ``since`` (:meth:`Replay.join`): join the channel with its events held
  (the session's ``subscribe``), read what was missed, answer whether it is recovered, then let
  the session write the replay and the held events after the reply (its ``activate``);
- the long-poll ``events`` op (:meth:`Replay.catch_up`);
- the hub's gap fill after an out-of-order event or a broker outage (:meth:`Replay.backfill`,
  handed to the hub when it is built).

Missed events come from the recent window that the broker keeps for all nodes (a reconnect
storm costs no database read) when it covers the position without a hole, else from the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from handlers.base import Result
from handlers.messages import event_message
from handlers.ports import Recent, Session
from storage.base import Store


class Window(Protocol):
    """The broker's recent events of a channel, shared by every node."""

    async def recent(self, channel: str, since: int, limit: int) -> Recent | None: ...


@dataclass(slots=True)
class Counters:
    """Recoveries served from the window and from the store, for the gateway's metrics."""

    recovery_from_window: int = 0
    recovery_from_store: int = 0


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Events after an offset, and the channel's position when they were read."""

    epoch: str
    last: int
    events: list[tuple[int, bytes]]
    complete: bool
    """False when more events were missed than were returned."""


def _unbroken(events: list[tuple[int, bytes]], since: int) -> bool:
    """Tell whether ``events`` follow ``since`` with no offset missing.

    A window can have a hole: a publish that Redis never took (it was down; the node sends it
    again later) or one a failover lost (replication is asynchronous). The store has them all.
    """
    return all(offset == since + i for i, (offset, _payload) in enumerate(events, 1))


class Replay:
    """Catches subscribers up from the recent window, else the store."""

    def __init__(self, store: Store, window: Window) -> None:
        self._store = store
        self._window = window
        self.counters = Counters()

    async def catch_up(self, channel: str, since: int, limit: int) -> CatchUp:
        """Return the events after ``since``: from the recent window, else from the store.

        The window (kept by the broker, shared by all nodes) answers a reconnect storm without
        touching the database; only a client further behind than the window costs store reads.
        """
        window = await self._window.recent(channel, since, limit)
        if window is not None and window.covers(since) and _unbroken(window.events, since):
            if limit:  # a plain subscribe only reads the position: not a recovery
                self.counters.recovery_from_window += 1
            missed = max(0, window.last - since)
            return CatchUp(window.epoch, window.last, window.events, len(window.events) >= missed)
        store = self._store
        position = await store.position(channel)
        if since >= position.offset or limit == 0:  # nothing missed, or only the position asked
            return CatchUp(position.epoch, position.offset, [], since >= position.offset)
        # Only a read of missed events is a recovery from the store (not a first subscribe's
        # position, which every plain subscribe to a quiet channel reads).
        self.counters.recovery_from_store += 1
        messages = await store.read_since(channel, since, limit=limit)
        events = [(m.offset, event_message(m)) for m in messages]
        last = max(position.offset, messages[-1].offset if messages else 0)
        return CatchUp(position.epoch, last, events, since + len(events) >= last)

    async def backfill(
        self, channel: str, since: int, limit: int, *, outage: bool = False
    ) -> tuple[str, list[tuple[int, bytes]]]:
        """Missing events for the hub's gap filling (same source as client recovery).

        After a broker outage (``outage``) the window may end short of the store: a failover
        can lose its last events, and publishes made meanwhile reached neither it nor pub/sub.
        Then the store's position decides, so the channel's last events are not left waiting
        for a later one.
        """
        found = await self.catch_up(channel, since, limit)
        if outage:
            position = await self._store.position(channel)
            if position.epoch == found.epoch and position.offset > found.last:
                messages = await self._store.read_since(channel, since, limit=limit)
                return position.epoch, [(m.offset, event_message(m)) for m in messages]
        return found.epoch, found.events

    async def join(
        self, session: Session, channel: str, since: tuple[int, str] | None, limit: int
    ) -> Result:
        """Subscribe ``session`` to ``channel`` and, with ``since`` (offset, epoch), recover
        what it missed (at most ``limit`` events): the ``subscribe`` op's answer.

        The session joins first, with the channel's events held, and only then is the position
        read: nothing can fall between the two. The replay and the held events past the
        position are written after the answer, in order, then the subscription is live.
        """
        await session.subscribe(channel)
        try:
            found = await self.catch_up(channel, since[0] if since else 0, limit if since else 0)
        except BaseException:
            session.unsubscribe(channel)
            raise
        result: Result = {"channel": channel, "offset": found.last, "epoch": found.epoch}
        replay: list[bytes] = []
        if since is not None:
            offset, epoch = since
            if epoch and found.epoch and epoch != found.epoch:
                result.update(recovered=False, reason="epoch_changed")
            elif offset > found.last:
                result.update(recovered=False, reason="offset_ahead")
            elif not found.complete:
                result.update(recovered=False, reason="too_old")
            else:
                replay = [payload for _offset, payload in found.events]
                result.update(recovered=True, missed=len(replay))
        session.activate(channel, replay, found.last, found.epoch)
        return result
