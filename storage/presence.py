"""Presence state: who is online, who is in a channel; the in-process twin of Redis's.

A :class:`Backend` keeps the global state of presence and says when a local transition is
global too (a user's first node, a channel's first subscription of a user, and their last).
:class:`LocalPresence` is the single-node default, in memory; ``storage/redis/presence.py`` is
the one every node shares through Redis. The loop that drives a backend and publishes the pushes
is ``gateway/fanout/presence.py``; the rules of the presence ops are ``handlers/presence.py``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class UserStatus:
    online: bool
    last_seen: int | None
    """Milliseconds since the epoch when the user was last connected; None while online."""


class Backend(Protocol):
    async def user_up(self, user: str) -> bool:
        """Count a node's first connection of ``user``; True when the user was offline."""
        ...

    async def user_down(self, user: str, now: int) -> bool:
        """Count a node's last connection of ``user`` leaving; True when now offline."""
        ...

    async def channel_up(self, channel: str, user: str) -> bool: ...

    async def channel_down(self, channel: str, user: str) -> bool: ...

    async def nodes(self) -> list[dict[str, Any]]:
        """The live nodes, each with what it says of itself (its card)."""
        ...

    async def statuses(self, users: list[str]) -> dict[str, UserStatus]: ...

    async def here(self, channel: str, limit: int) -> tuple[list[str], int]:
        """Return up to ``limit`` users in the channel and how many there are in all."""
        ...

    async def sweep(self) -> Sweep:
        """Keep this node alive, clear dead nodes, and say how this node's record looks."""
        ...

    async def recorded(self) -> tuple[set[str], set[tuple[str, str]]]:
        """This node's record in the shared state: its users and (channel, user) pairs."""
        ...

    async def add_users(self, users: list[str]) -> list[str] | None:
        """Add to this node's record; return who came online (None: node not registered)."""
        ...

    async def remove_users(self, users: list[str], now: int) -> list[str]:
        """Remove from this node's record; return who went offline."""
        ...

    async def add_pairs(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]] | None: ...

    async def remove_pairs(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]: ...


@dataclass
class Sweep:
    """One heartbeat: is this node still registered, the size of its record, what died."""

    registered: bool = True
    users: int = -1
    """How many users this node's record holds (-1: not known, nothing to compare)."""
    pairs: int = -1
    offline: list[str] = field(default_factory=list)
    left: list[tuple[str, str]] = field(default_factory=list)


MAX_NODES = 1000
"""Nodes :meth:`RedisPresence.nodes` lists at most."""


class LocalPresence:
    """Presence of one node, in memory. Last-seen times are kept for ``max_users`` users."""

    def __init__(self, *, max_users: int = 100_000) -> None:
        self.card: Callable[[], dict[str, Any]] | None = None
        """What this node says of itself in :meth:`nodes` (set by the gateway)."""
        self._online: set[str] = set()
        self._channels: dict[str, set[str]] = {}
        self._last_seen: OrderedDict[str, int] = OrderedDict()
        self._max_users = max_users

    async def user_up(self, user: str) -> bool:
        self._online.add(user)
        self._last_seen.pop(user, None)
        return True

    async def user_down(self, user: str, now: int) -> bool:
        self._online.discard(user)
        self._last_seen[user] = now
        self._last_seen.move_to_end(user)
        if len(self._last_seen) > self._max_users:
            self._last_seen.popitem(last=False)
        return True

    async def channel_up(self, channel: str, user: str) -> bool:
        self._channels.setdefault(channel, set()).add(user)
        return True

    async def nodes(self) -> list[dict[str, Any]]:
        """The live nodes with their cards: this one alone."""
        return [{"node": "local", "alive": True, **(self.card() if self.card else {})}]

    async def channel_down(self, channel: str, user: str) -> bool:
        users = self._channels.get(channel)
        if users is not None:
            users.discard(user)
            if not users:
                del self._channels[channel]
        return True

    async def statuses(self, users: list[str]) -> dict[str, UserStatus]:
        return {
            u: UserStatus(u in self._online, None if u in self._online else self._last_seen.get(u))
            for u in users
        }

    async def here(self, channel: str, limit: int) -> tuple[list[str], int]:
        users = self._channels.get(channel, set())
        return sorted(users)[:limit], len(users)

    async def sweep(self) -> Sweep:
        return Sweep()

    async def recorded(self) -> tuple[set[str], set[tuple[str, str]]]:
        pairs = {(c, u) for c, users in self._channels.items() for u in users}
        return set(self._online), pairs

    async def add_users(self, users: list[str]) -> list[str] | None:
        came = [u for u in users if u not in self._online]
        for user in came:
            await self.user_up(user)
        return came

    async def remove_users(self, users: list[str], now: int) -> list[str]:
        gone = [u for u in users if u in self._online]
        for user in gone:
            await self.user_down(user, now)
        return gone

    async def add_pairs(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]] | None:
        came = [(c, u) for c, u in pairs if u not in self._channels.get(c, ())]
        for channel, user in came:
            await self.channel_up(channel, user)
        return came

    async def remove_pairs(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        gone = [(c, u) for c, u in pairs if u in self._channels.get(c, ())]
        for channel, user in gone:
            await self.channel_down(channel, user)
        return gone
