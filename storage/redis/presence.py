"""Presence shared by every node through Redis, written by small Lua scripts.

Counters live in Redis; every node also keeps a liveness entry (refreshed every ``refresh``
seconds, expiring after ``ttl``, scored with Redis TIME) and a record of what it added. When a
node dies, the first other node to notice its expired entry removes everything that node had
added and reports the resulting offline users and leaves (the tracker in
``gateway/fanout/presence.py`` publishes their pushes), so a crashed node leaves no ghosts for
longer than ``ttl + refresh`` seconds. How a paused node's stale view is kept from outvoting the
live one is in the tracker's docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import orjson

from storage.presence import MAX_NODES, Sweep, UserStatus
from storage.redis.client import RedisClient, lua
from storage.redis.slots import partition_of, partition_prefix

log = logging.getLogger(__name__)


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
