"""Who is online, who is in a channel, and the pushes when that changes.

The hub reports local transitions: a user's first connection on this node and their last one
leaving, a user's first subscription on this node to a channel and their last one leaving. A
backend turns them into global state and says when a transition is global too (first node /
last node); only then is a push published:

- ``{"op": "presence", "user", "online", "last_seen"}`` on the internal channel
  ``~presence:{user}``, which connections that asked for a contact's status are subscribed to;
- ``{"op": "join" | "leave", "channel", "user"}`` on ``dm:`` and ``group:`` channels.

``LocalPresence`` keeps the state in this process (the single-node default). ``RedisPresence``
keeps counters in Redis, written by small Lua scripts; every node also keeps a liveness entry
(refreshed every ``refresh`` seconds, expiring after ``ttl``, scored with Redis TIME) and a
record of what it added. When a node dies, the first other node to notice its expired entry
removes everything that node had added and publishes the resulting offline and leave pushes, so
a crashed node leaves no ghosts for longer than ``ttl + refresh`` seconds.

A node that was only paused (a stopped process, a long GC pause, a stalled VM) comes back to
find itself reaped. Three rules keep its stale view from outvoting the live one:

- a script changes a counter only when it changed this node's own record entry (SADD/SREM
  returned 1), so a node can only take back what it added itself, once: its sockets that close
  after the pause change nothing for users it no longer holds in Redis;
- adds are refused while the node is not registered, and the reaper checks the node's score
  against Redis TIME inside its script, so a node that refreshed in the meantime is not reaped
  on a stale read;
- every heartbeat reports whether the node was registered and how big its record is; when it
  was not (or the sizes disagree with what the node holds on two heartbeats running), the node
  writes its record again from what it holds, in batches of ``RECONCILE_BATCH``, adding what is
  missing and removing what it no longer holds, and publishes the pushes that causes.
  Presence is whole again one refresh after the node resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import orjson

from handlers.messages import join_leave_message, presence_message
from handlers.ports import UserStatus
from handlers.presence import WATCH_PREFIX
from storage.errors import Unavailable
from storage.redis.client import RedisClient, lua
from storage.redis.resp import ConnectionLost, RespError
from storage.redis.slots import partition_of, partition_prefix

log = logging.getLogger(__name__)
_T = TypeVar("_T")


def _now_ms() -> int:
    return int(time.time() * 1000)


def pushes_join_leave(channel: str) -> bool:
    """Join/leave pushes are for conversations; rooms and video audiences can be huge."""
    return channel.startswith(("dm:", "group:"))


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


# The scripts (storage/redis/lua/presence_*.lua). Every script writes this node's record
# (``nu:``/``nc:`` sets) first and changes a shared counter only when that write changed the
# record (SADD/SREM returned 1): a repeated or stale add/remove never skews a count, and a node
# can only ever take back what it added itself. Adds are refused (nil) while the node is not
# registered in the nodes set (it was reaped, or Redis forgot it): its next heartbeat sees that
# and adds everything again (``_RECORD_*``). Liveness scores are Redis TIME, so the nodes'
# clocks do not matter.
_HEARTBEAT = lua("presence_heartbeat")
_RECORD_USERS_ADD = lua("presence_add_users")
_RECORD_USERS_REMOVE = lua("presence_remove_users")
_RECORD_PAIRS_ADD = lua("presence_add_pairs")
_RECORD_PAIRS_REMOVE = lua("presence_remove_pairs")
_REAP = lua("presence_reap_node")


class RedisPresence:
    """Presence shared by every node through Redis (see the module docstring).

    The state is split into the client's partitions (:mod:`storage.redis.slots`): one on a
    single Redis (keys as they always were), several on a cluster, each under its own hash
    tag so that every script touches one slot. A user's counter and last-seen time live in
    the user's partition, a channel's hash in the channel's partition, and every partition
    has its own copy of the node list and of each node's record of what it added there. A
    heartbeat is one script call per partition; a reap of a dead node, one per partition.
    """

    def __init__(self, redis: RedisClient, *, prefix: str, ttl: float) -> None:
        self._redis = redis
        self._base = prefix + "p:"
        self._parts = max(1, redis.partitions)
        self._prefixes = [partition_prefix(self._base, i, self._parts) for i in range(self._parts)]
        self._node = redis.node_id.decode()
        self._ttl_ms = int(ttl * 1000)
        self.card: Callable[[], dict[str, Any]] | None = None
        """What this node says of itself in :meth:`nodes`, written at every heartbeat (with the
        presence ttl), beside its liveness entry (set by the gateway)."""

    def _part(self, name: str) -> int:
        return partition_of(name, self._parts)

    def _k(self, part: int, *parts: str) -> bytes:
        return (self._prefixes[part] + "".join(parts)).encode()

    async def _run(self, script: bytes, keys: list[bytes], args: list[bytes]) -> Any:
        return await self._redis.script(script, keys, args)

    # One connection's change is a batch of one: the same script, so one rule for counting.

    async def user_up(self, user: str) -> bool:
        return bool(await self.add_users([user]))

    async def user_down(self, user: str, now: int) -> bool:
        return bool(await self.remove_users([user], now))

    async def channel_up(self, channel: str, user: str) -> bool:
        return bool(await self.add_pairs([(channel, user)]))

    async def channel_down(self, channel: str, user: str) -> bool:
        return bool(await self.remove_pairs([(channel, user)]))

    async def statuses(self, users: list[str]) -> dict[str, UserStatus]:
        if not users:
            return {}
        # Two commands per partition for the whole list, not two per user: the feed fan-out
        # asks about hundreds of followers at once, and a task per key would hold the loop.
        groups: dict[int, list[str]] = {}
        for user in dict.fromkeys(users):
            groups.setdefault(self._part(user), []).append(user)
        found: dict[str, UserStatus] = {}

        async def read(part: int, group: list[str]) -> None:
            counts, seen = await asyncio.gather(
                self._redis.call(b"MGET", *(self._k(part, "u:", u) for u in group)),
                self._redis.call(b"MGET", *(self._k(part, "ls:", u) for u in group)),
            )
            for u, c, s in zip(group, counts, seen, strict=True):
                online = bool(c) and int(c) > 0
                found[u] = UserStatus(online, None if online else (int(s) if s else None))

        await asyncio.gather(*(read(part, group) for part, group in groups.items()))
        return {u: found[u] for u in users}

    def channel_key(self, channel: str) -> bytes:
        """The Redis hash of the channel's users (one field per user; HLEN = how many)."""
        return self._k(self._part(channel), "c:", channel)

    def channel_prefix(self, part: int, channel_prefix: str) -> bytes:
        """The start of the hash key of every channel beginning ``channel_prefix`` that falls
        in partition ``part`` (the hot counters read video audiences with it)."""
        return self._k(part, "c:", channel_prefix)

    async def here(self, channel: str, limit: int) -> tuple[list[str], int]:
        key = self.channel_key(channel)
        total = await self._redis.call(b"HLEN", key)
        if not total:
            return [], 0
        if int(total) > limit:
            names = await self._redis.call(b"HRANDFIELD", key, str(limit).encode())
        else:
            names = await self._redis.call(b"HKEYS", key)
        return sorted(n.decode() for n in names)[:limit], int(total)

    async def sweep(self) -> Sweep:
        beats = await asyncio.gather(*(self._sweep_part(part) for part in range(self._parts)))
        beat = Sweep(users=0, pairs=0)
        for one in beats:
            beat.registered = beat.registered and one.registered
            beat.users += one.users
            beat.pairs += one.pairs
            beat.offline += one.offline
            beat.left += one.left
        return beat

    async def nodes(self) -> list[dict[str, Any]]:
        """The nodes with a liveness entry (at most :data:`MAX_NODES`), each with its card."""
        found = await self._redis.call(
            b"ZRANGE", self._k(0, "nodes"), b"0", str(MAX_NODES - 1).encode()
        )
        names = [bytes(n).decode() for n in found]
        cards = await asyncio.gather(
            *(self._redis.call(b"GET", self._k(0, "card:", n)) for n in names)
        )
        out: list[dict[str, Any]] = []
        for name, card in zip(names, cards, strict=True):
            described: dict[str, Any] = {}
            if card is not None:
                with contextlib.suppress(orjson.JSONDecodeError):
                    loaded = orjson.loads(card)
                    if isinstance(loaded, dict):
                        described = loaded
            out.append({"node": name, "alive": card is not None, **described})
        return out

    async def _write_card(self) -> None:
        if self.card is not None:
            await self._redis.call(
                b"SET",
                self._k(0, "card:", self._node),
                orjson.dumps(self.card()),
                b"PX",
                str(self._ttl_ms).encode(),
            )

    async def _sweep_part(self, part: int) -> Sweep:
        if part == 0:
            await self._write_card()
        nodes = self._k(part, "nodes")
        keys = [nodes, self._k(part, "nu:", self._node), self._k(part, "nc:", self._node)]
        fresh, users, pairs, dead = await self._run(
            _HEARTBEAT, keys, [self._node.encode(), str(self._ttl_ms).encode()]
        )
        beat = Sweep(registered=not fresh, users=int(users), pairs=int(pairs))
        for node in dead:
            found = await self._run(_REAP, [nodes], [self._prefixes[part].encode(), node])
            if not isinstance(found, list):
                continue  # another node reaped it first, or it came back in the meantime
            log.warning(
                "node %s stopped refreshing its presence; cleared what it held", node.decode()
            )
            beat.offline += [u.decode() for u in found[0]]
            beat.left += [_pair(m) for m in found[1]]
        return beat

    async def recorded(self) -> tuple[set[str], set[tuple[str, str]]]:
        users: set[str] = set()
        pairs: set[tuple[str, str]] = set()
        for part in range(self._parts):
            found_users, found_pairs = await asyncio.gather(
                self._redis.call(b"SMEMBERS", self._k(part, "nu:", self._node)),
                self._redis.call(b"SMEMBERS", self._k(part, "nc:", self._node)),
            )
            users.update(u.decode() for u in found_users)
            pairs.update(_pair(m) for m in found_pairs)
        return users, pairs

    async def _record(
        self, script: bytes, extra: list[bytes], items: list[tuple[str, bytes]]
    ) -> list[bytes] | None:
        """Run a record script per partition over ``items`` ((partition name, member)).

        None when every partition refused (this node is not registered there); a partition
        that refused while others took theirs is written again by the next reconcile.
        """
        groups: dict[int, list[bytes]] = {}
        for name, member in items:
            groups.setdefault(self._part(name), []).append(member)
        node = self._node.encode()
        found = await asyncio.gather(
            *(
                self._run(
                    script,
                    [self._k(part, "nodes")],
                    [self._prefixes[part].encode(), node, *extra, *members],
                )
                for part, members in groups.items()
            )
        )
        taken = [f for f in found if f is not None]
        if found and not taken:
            return None
        return [m for f in taken for m in f]

    async def add_users(self, users: list[str]) -> list[str] | None:
        found = await self._record(_RECORD_USERS_ADD, [], [(u, u.encode()) for u in users])
        return None if found is None else [u.decode() for u in found]

    async def remove_users(self, users: list[str], now: int) -> list[str]:
        found = await self._record(
            _RECORD_USERS_REMOVE, [str(now).encode()], [(u, u.encode()) for u in users]
        )
        return [u.decode() for u in found or ()]

    async def add_pairs(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]] | None:
        found = await self._record(
            _RECORD_PAIRS_ADD, [], [(c, f"{c}\n{u}".encode()) for c, u in pairs]
        )
        return None if found is None else [_pair(m) for m in found]

    async def remove_pairs(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        found = await self._record(
            _RECORD_PAIRS_REMOVE, [], [(c, f"{c}\n{u}".encode()) for c, u in pairs]
        )
        return [_pair(m) for m in found or ()]


def _pair(member: bytes) -> tuple[str, str]:
    channel, _, user = member.decode().partition("\n")
    return channel, user


Publish = Callable[[str, bytes], Awaitable[None]]


RECONCILE_BATCH = 500
"""Users or (channel, user) pairs per script call when a node writes its record again."""
_ERRORS = (Unavailable, ConnectionLost, RespError, OSError, TimeoutError)


class PresenceTracker:
    """Runs the backend off the hot path and publishes the pushes of global transitions.

    It also keeps what this node holds (its online users, its (channel, user) pairs) so that
    the shared record can be written again when it was lost or disagrees: after this node was
    reaped (a pause longer than the ttl: a stopped process, a long GC pause, a stalled VM),
    after Redis forgot everything, or after an update failed.
    """

    def __init__(
        self,
        backend: Backend,
        publish: Publish,
        *,
        refresh: float,
        audience: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.backend = backend
        self._publish = publish
        self._refresh = refresh
        self._audience = audience
        """Told when a user's first subscription to a channel began or their last one ended,
        on any node (video channels show their viewer count)."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._users: set[str] = set()
        self._pairs: set[tuple[str, str]] = set()
        self._suspect = False
        self._beat_lock = asyncio.Lock()
        self.reconciles = 0
        """How many times this node wrote its record again (logged; for tests and operators)."""

    def start(self) -> None:
        """Begin refreshing this node's liveness (:meth:`run`) in the background."""
        self._spawn(self.run())

    async def close(self) -> None:
        """Stop the refresh and the updates under way (the hub closes its tracker)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Called synchronously by the hub; the work happens in background tasks. Commands reach
    # Redis in the order these are called (each is one script call on a pipelined connection).

    def user_up(self, user: str) -> None:
        self._users.add(user)
        self._spawn(self._user_up(user))

    def user_down(self, user: str) -> None:
        self._users.discard(user)
        self._spawn(self._user_down(user))

    def joined(self, channel: str, user: str) -> None:
        self._pairs.add((channel, user))
        self._spawn(self._channel(channel, user, up=True))

    def left(self, channel: str, user: str) -> None:
        self._pairs.discard((channel, user))
        self._spawn(self._channel(channel, user, up=False))

    async def _user_up(self, user: str) -> None:
        if await self._guard(self.backend.user_up(user)):
            await self._status_push(user, UserStatus(True, None))

    async def _user_down(self, user: str) -> None:
        now = _now_ms()
        if await self._guard(self.backend.user_down(user, now)):
            await self._status_push(user, UserStatus(False, now))

    async def _channel(self, channel: str, user: str, *, up: bool) -> None:
        change = self.backend.channel_up if up else self.backend.channel_down
        if await self._guard(change(channel, user)):
            await self._channel_pushes([(channel, user)], up=up)

    async def _guard(self, call: Awaitable[bool]) -> bool:
        try:
            return await call
        except _ERRORS as exc:
            log.warning("presence update failed: %s", exc)
            return False

    async def _status_push(self, user: str, status: UserStatus) -> None:
        await self._publish(WATCH_PREFIX + user, presence_message(user, status))

    async def _join_leave_push(self, channel: str, user: str, *, up: bool) -> None:
        await self._publish(channel, join_leave_message(channel, user, up=up))

    async def resync(self) -> None:
        """After a Redis outage: refresh at once, writing the record again if it was lost."""
        await self._beat()

    async def _beat(self) -> None:
        async with self._beat_lock:
            try:
                beat = await self.backend.sweep()
            except _ERRORS as exc:
                log.warning("presence sweep failed: %s", exc)
                return
            now = _now_ms()
            for user in beat.offline:
                await self._status_push(user, UserStatus(False, now))
            await self._channel_pushes(beat.left, up=False)
            differs = beat.users >= 0 and (
                beat.users != len(self._users) or beat.pairs != len(self._pairs)
            )
            # A count can differ for a moment while updates are on their way; one that still
            # differs a refresh later is real. A node that was not registered holds nothing.
            if not beat.registered or (differs and self._suspect):
                self._suspect = False
                await self._reconcile(registered=beat.registered)
            else:
                self._suspect = differs

    async def _reconcile(self, *, registered: bool) -> None:
        """Make this node's shared record what this node holds: add what is missing, remove
        what it no longer holds, in batches; publish the transitions that causes."""
        try:
            users, pairs = await self.backend.recorded()
            add = [u for u in self._users if u not in users]
            remove = [u for u in users if u not in self._users]
            add_pairs = [m for m in self._pairs if m not in pairs]
            remove_pairs = [m for m in pairs if m not in self._pairs]
            if not (add or remove or add_pairs or remove_pairs):
                return  # a node starting, or updates that were on their way
            self.reconciles += 1
            log.warning(
                "presence record of this node %s: adding %d users and %d channel memberships,"
                " removing %d and %d",
                "was lost (paused longer than the ttl, or Redis forgot it)"
                if not registered
                else "disagreed with what it holds",
                len(add),
                len(add_pairs),
                len(remove),
                len(remove_pairs),
            )
            for batch in _batches(add):
                # Checked again at the moment of sending: what changed meanwhile is not undone.
                came = await self.backend.add_users([u for u in batch if u in self._users])
                if came is None:
                    return  # reaped again in the meantime: the next beat starts over
                for user in came:
                    await self._status_push(user, UserStatus(True, None))
            for batch in _batches(remove):
                now = _now_ms()
                gone = await self.backend.remove_users(
                    [u for u in batch if u not in self._users], now
                )
                for user in gone:
                    await self._status_push(user, UserStatus(False, now))
            for pair_batch in _batches(add_pairs):
                joined = await self.backend.add_pairs([m for m in pair_batch if m in self._pairs])
                if joined is None:
                    return
                await self._channel_pushes(joined, up=True)
            for pair_batch in _batches(remove_pairs):
                left = await self.backend.remove_pairs(
                    [m for m in pair_batch if m not in self._pairs]
                )
                await self._channel_pushes(left, up=False)
        except _ERRORS as exc:
            log.warning("presence reconcile failed (tried again on the next refresh): %s", exc)
            self._suspect = True

    async def _channel_pushes(self, pairs: list[tuple[str, str]], *, up: bool) -> None:
        for channel, user in pairs:
            if pushes_join_leave(channel):
                await self._join_leave_push(channel, user, up=up)
        audience = self._audience
        if audience is not None:
            for channel in dict.fromkeys(c for c, _ in pairs if not pushes_join_leave(c)):
                await audience(channel)

    async def run(self) -> None:
        """Refresh this node's liveness and clear what dead nodes left behind, forever."""
        while True:
            await self._beat()
            await asyncio.sleep(self._refresh)


def _batches(items: list[_T]) -> Iterator[list[_T]]:
    for start in range(0, len(items), RECONCILE_BATCH):
        yield items[start : start + RECONCILE_BATCH]
