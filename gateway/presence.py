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
(refreshed every ``refresh`` seconds, expiring after ``ttl``) and a record of what it added. When
a node dies, the first other node to notice its expired entry removes everything that node had
added and publishes the resulting offline and leave pushes, so a crashed node leaves no ghosts
for longer than ``ttl + refresh`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

import orjson

from gateway.broker.redis import RedisBroker
from gateway.broker.resp import ConnectionLost, RespError
from handlers.base import UserStatus
from handlers.presence import WATCH_PREFIX
from storage.errors import Unavailable

log = logging.getLogger(__name__)


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

    async def statuses(self, users: list[str]) -> dict[str, UserStatus]: ...

    async def here(self, channel: str, limit: int) -> tuple[list[str], int]:
        """Return up to ``limit`` users in the channel and how many there are in all."""
        ...

    async def sweep(self) -> tuple[list[str], list[tuple[str, str]]]:
        """Keep this node alive; return (users offline, (channel, user) left) of dead nodes."""
        ...

    async def lost(self) -> bool:
        """Tell whether the shared state forgot this node (Redis restarted, or it was reaped)."""
        ...


class LocalPresence:
    """Presence of one node, in memory. Last-seen times are kept for ``max_users`` users."""

    def __init__(self, *, max_users: int = 100_000) -> None:
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

    async def sweep(self) -> tuple[list[str], list[tuple[str, str]]]:
        return [], []

    async def lost(self) -> bool:
        return False


_USER_UP = b"""
redis.call('SADD', KEYS[2], ARGV[1])
return redis.call('INCR', KEYS[1])
"""
_USER_DOWN = b"""
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[2])
local n = redis.call('DECR', KEYS[1])
if n <= 0 then redis.call('DEL', KEYS[1]) end
return n
"""
_CHANNEL_UP = b"""
redis.call('SADD', KEYS[2], ARGV[2])
return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
"""
_CHANNEL_DOWN = b"""
redis.call('SREM', KEYS[2], ARGV[2])
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return n
"""
# KEYS[1]: the nodes sorted set. ARGV: key prefix, dead node, now (ms).
_REAP = b"""
local p = ARGV[1]
local node = ARGV[2]
if redis.call('ZREM', KEYS[1], node) == 0 then return false end
local off = {}
for _, u in ipairs(redis.call('SMEMBERS', p .. 'nu:' .. node)) do
  local n = redis.call('DECR', p .. 'u:' .. u)
  if n <= 0 then
    redis.call('DEL', p .. 'u:' .. u)
    redis.call('SET', p .. 'ls:' .. u, ARGV[3])
    table.insert(off, u)
  end
end
local left = {}
for _, m in ipairs(redis.call('SMEMBERS', p .. 'nc:' .. node)) do
  local cut = string.find(m, '\\n', 1, true)
  local ch = string.sub(m, 1, cut - 1)
  local u = string.sub(m, cut + 1)
  local n = redis.call('HINCRBY', p .. 'c:' .. ch, u, -1)
  if n <= 0 then
    redis.call('HDEL', p .. 'c:' .. ch, u)
    table.insert(left, m)
  end
end
redis.call('DEL', p .. 'nu:' .. node, p .. 'nc:' .. node)
return {off, left}
"""


class RedisPresence:
    """Presence shared by every node through Redis (see the module docstring)."""

    def __init__(self, broker: RedisBroker, *, prefix: str, ttl: float) -> None:
        self._redis = broker
        self._p = prefix + "p:"
        self._node = broker.node_id.decode()
        self._ttl_ms = int(ttl * 1000)

    def _k(self, *parts: str) -> bytes:
        return (self._p + "".join(parts)).encode()

    async def _run(self, script: bytes, keys: list[bytes], args: list[bytes]) -> Any:
        return await self._redis.script(script, keys, args)

    async def user_up(self, user: str) -> bool:
        count = await self._run(
            _USER_UP, [self._k("u:", user), self._k("nu:", self._node)], [user.encode()]
        )
        return bool(count == 1)

    async def user_down(self, user: str, now: int) -> bool:
        keys = [self._k("u:", user), self._k("nu:", self._node), self._k("ls:", user)]
        count = await self._run(_USER_DOWN, keys, [user.encode(), str(now).encode()])
        return bool(count <= 0)

    async def channel_up(self, channel: str, user: str) -> bool:
        keys = [self._k("c:", channel), self._k("nc:", self._node)]
        count = await self._run(_CHANNEL_UP, keys, [user.encode(), f"{channel}\n{user}".encode()])
        return bool(count == 1)

    async def channel_down(self, channel: str, user: str) -> bool:
        keys = [self._k("c:", channel), self._k("nc:", self._node)]
        count = await self._run(_CHANNEL_DOWN, keys, [user.encode(), f"{channel}\n{user}".encode()])
        return bool(count <= 0)

    async def statuses(self, users: list[str]) -> dict[str, UserStatus]:
        if not users:
            return {}
        # Two commands for the whole list, not two per user: the feed fan-out asks about
        # hundreds of followers at once, and a task per key would hold the event loop.
        counts, seen = await asyncio.gather(
            self._redis.call(b"MGET", *(self._k("u:", u) for u in users)),
            self._redis.call(b"MGET", *(self._k("ls:", u) for u in users)),
        )
        return {
            u: UserStatus(
                bool(c) and int(c) > 0, None if c and int(c) > 0 else (int(s) if s else None)
            )
            for u, c, s in zip(users, counts, seen, strict=True)
        }

    def channel_key(self, channel: str) -> bytes:
        """The Redis hash of the channel's users (one field per user; HLEN = how many)."""
        return self._k("c:", channel)

    async def here(self, channel: str, limit: int) -> tuple[list[str], int]:
        key = self._k("c:", channel)
        total = await self._redis.call(b"HLEN", key)
        if not total:
            return [], 0
        if int(total) > limit:
            names = await self._redis.call(b"HRANDFIELD", key, str(limit).encode())
        else:
            names = await self._redis.call(b"HKEYS", key)
        return sorted(n.decode() for n in names)[:limit], int(total)

    async def lost(self) -> bool:
        return await self._redis.call(b"ZSCORE", self._k("nodes"), self._node) is None

    async def sweep(self) -> tuple[list[str], list[tuple[str, str]]]:
        nodes = self._k("nodes")
        now = _now_ms()
        await self._redis.call(b"ZADD", nodes, str(now + self._ttl_ms).encode(), self._node)
        dead = await self._redis.call(b"ZRANGEBYSCORE", nodes, b"-inf", str(now).encode())
        offline: list[str] = []
        left: list[tuple[str, str]] = []
        for node in dead:
            found = await self._run(_REAP, [nodes], [self._p.encode(), node, str(now).encode()])
            if not isinstance(found, list):
                continue  # another node reaped it first
            log.warning(
                "node %s stopped refreshing its presence; cleared what it held", node.decode()
            )
            offline += [u.decode() for u in found[0]]
            for member in found[1]:
                channel, _, user = member.decode().partition("\n")
                left.append((channel, user))
        return offline, left


Publish = Callable[[str, bytes], Awaitable[None]]
Spawn = Callable[[Coroutine[Any, Any, Any]], None]


class PresenceTracker:
    """Runs the backend off the hot path and publishes the pushes of global transitions."""

    def __init__(self, backend: Backend, publish: Publish, spawn: Spawn, *, refresh: float) -> None:
        self.backend = backend
        self._publish = publish
        self._spawn = spawn
        self._refresh = refresh
        self.audience: Callable[[str], Awaitable[None]] | None = None
        """Told when a user's first subscription to a channel began or their last one ended,
        on any node (video channels show their viewer count)."""

    # Called synchronously by the hub; the work happens in background tasks. Commands reach
    # Redis in the order these are called (each is one script call on a pipelined connection).

    def user_up(self, user: str) -> None:
        self._spawn(self._user_up(user))

    def user_down(self, user: str) -> None:
        self._spawn(self._user_down(user))

    def joined(self, channel: str, user: str) -> None:
        self._spawn(self._channel(channel, user, up=True))

    def left(self, channel: str, user: str) -> None:
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
        if not await self._guard(change(channel, user)):
            return
        if pushes_join_leave(channel):
            await self._join_leave_push(channel, user, up=up)
        elif self.audience is not None:
            await self.audience(channel)

    async def _guard(self, call: Awaitable[bool]) -> bool:
        try:
            return await call
        except (Unavailable, ConnectionLost, RespError, OSError, TimeoutError) as exc:
            log.warning("presence update failed: %s", exc)
            return False

    async def _status_push(self, user: str, status: UserStatus) -> None:
        payload = orjson.dumps(
            {"op": "presence", "user": user, "online": status.online, "last_seen": status.last_seen}
        )
        await self._publish(WATCH_PREFIX + user, payload)

    async def _join_leave_push(self, channel: str, user: str, *, up: bool) -> None:
        payload = orjson.dumps({"op": "join" if up else "leave", "channel": channel, "user": user})
        await self._publish(channel, payload)

    async def resync(self, users: list[str], pairs: list[tuple[str, str]]) -> None:
        """After a Redis outage: if the shared state lost this node, count its users again."""
        try:
            lost = await self.backend.lost()
        except (Unavailable, ConnectionLost, RespError, OSError, TimeoutError) as exc:
            log.warning("presence resync failed: %s", exc)
            return
        if not lost:
            return
        log.warning("presence state lost in Redis; registering %d users again", len(users))
        for user in users:
            self.user_up(user)
        for channel, user in pairs:
            self.joined(channel, user)

    async def run(self) -> None:
        """Refresh this node's liveness and clear what dead nodes left behind, forever."""
        while True:
            try:
                offline, left = await self.backend.sweep()
            except (Unavailable, ConnectionLost, RespError, OSError, TimeoutError) as exc:
                log.warning("presence sweep failed: %s", exc)
            else:
                now = _now_ms()
                for user in offline:
                    await self._status_push(user, UserStatus(False, now))
                for channel, user in left:
                    if pushes_join_leave(channel):
                        await self._join_leave_push(channel, user, up=False)
                    elif self.audience is not None:
                        await self.audience(channel)
            await asyncio.sleep(self._refresh)
