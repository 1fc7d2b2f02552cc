"""What every handler shares: the params base type, the op decorator and the call context.

A handler is an async function ``(ctx, params) -> result`` with a declared params schema. It
knows no transport: the gateway decodes and validates a WebSocket frame or a REST request into
the params struct, calls the handler, and encodes the result or the :class:`OpError`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from handlers.errors import FORBIDDEN, OpError
from storage.base import Store


class Params(msgspec.Struct, kw_only=True, tag_field="op", forbid_unknown_fields=False):
    """Base of every op's params; ``op`` is the tag and ``id`` the client's request id."""

    id: int | None = None


P = TypeVar("P", bound=Params)
Result = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Operation(Generic[P]):
    """An op: its wire name, its params schema and the function that serves it."""

    name: str
    params: type[P]
    func: Callable[[Context, P], Awaitable[Result]]
    needs_session: bool = False
    """True for ops that only make sense on a live connection (subscribe, unsubscribe)."""

    async def __call__(self, ctx: Context, params: P) -> Result:
        return await self.func(ctx, params)


def operation(
    params: type[P], *, needs_session: bool = False
) -> Callable[[Callable[[Context, P], Awaitable[Result]]], Operation[P]]:
    """Declare an op; its name is the params struct's tag."""

    def wrap(func: Callable[[Context, P], Awaitable[Result]]) -> Operation[P]:
        tag = params.__struct_config__.tag
        if not isinstance(tag, str):
            raise TypeError(f"{params.__name__} needs a string tag")
        return Operation(tag, params, func, needs_session)

    return wrap


class Session(Protocol):
    """The subscription side of one live connection."""

    @property
    def subscription_count(self) -> int: ...

    def is_subscribed(self, channel: str) -> bool: ...

    async def subscribe(self, channel: str) -> None:
        """Join the channel, pending: its events are held until :meth:`activate`.

        Returns once the node is subscribed, so every event from now on is either held or,
        having happened before, readable from the window or the store.
        """
        ...

    def subscribed(self, prefix: str) -> int:
        """Count this connection's subscriptions whose channel starts with ``prefix``."""
        ...

    def activate(self, channel: str, replay: list[bytes], after: int, epoch: str) -> None:
        """After the current reply: send ``replay``, then held events past ``after``, then live."""
        ...

    def unsubscribe(self, channel: str) -> bool:
        """Stop receiving the channel's events; False when it was not subscribed."""
        ...


@dataclass(frozen=True, slots=True)
class Recent:
    """A channel's remembered window of recent events (kept by the broker, bounded)."""

    epoch: str
    last: int
    """The highest offset remembered."""
    first: int
    """The lowest offset remembered."""
    events: list[tuple[int, bytes]]
    """(offset, encoded event) after the asked-for offset, oldest first, up to the limit."""

    def covers(self, since: int) -> bool:
        """Tell whether every event after ``since`` up to ``last`` is in the window."""
        return since >= self.last or self.first <= since + 1


@dataclass(frozen=True, slots=True)
class UserStatus:
    online: bool
    last_seen: int | None
    """Milliseconds since the epoch when the user was last connected; None while online."""


class PresenceView(Protocol):
    """Who is online and who is in a channel, across all nodes."""

    async def statuses(self, users: list[str]) -> dict[str, UserStatus]: ...

    async def here(self, channel: str, limit: int) -> tuple[list[str], int]:
        """Return up to ``limit`` users subscribed to the channel now, and how many in all."""
        ...


class Watcher(Protocol):
    async def wait(self, timeout: float) -> bool:
        """Wait until an event arrives on the watched channel; False on timeout."""
        ...


class Fanout(Protocol):
    """The hub as handlers see it."""

    async def publish(self, channel: str, payload: bytes, offset: int = 0, epoch: str = "") -> None:
        """Deliver an encoded event to every subscriber on every node.

        With an ``offset`` the event is a stored message: it is delivered in offset order and
        remembered in the channel's recent window. Without one it is an ephemeral push.
        """
        ...

    async def recent(self, channel: str, since: int, limit: int) -> Recent | None:
        """Return the channel's remembered events after ``since`` (None: nothing remembered)."""
        ...

    async def kick(self, user_id: str, channel: str, reason: str) -> None:
        """End ``user_id``'s subscriptions to ``channel`` on every node."""
        ...

    def watch(self, channel: str) -> AbstractAsyncContextManager[Watcher]:
        """Wake a waiter when the channel gets an event (REST long poll)."""
        ...


class TokenIssuer(Protocol):
    def issue_access_token(self, user_id: str) -> tuple[str, int]:
        """Return a signed access token and its lifetime in seconds."""
        ...


class PasswordHasher(Protocol):
    async def hash(self, password: str) -> str: ...

    async def verify(self, password: str, encoded: str | None) -> bool:
        """Check a password; with ``encoded`` None, spend the same time and say False."""
        ...


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds handlers enforce; all come from settings."""

    max_message_bytes: int = 8192
    history_max_limit: int = 100
    max_subscriptions: int = 100
    max_group_members: int = 1024
    longpoll_max_seconds: float = 25.0
    longpoll_max_events: int = 100
    refresh_token_ttl: int = 30 * 24 * 3600
    max_replay: int = 1000
    """Events a reconnecting client may recover; past that it refetches history."""
    max_watched_users: int = 500
    typing_interval: float = 2.0
    """Seconds between two typing pushes of one user in one channel."""


class Throttle:
    """At most one event per key per ``interval``; remembers at most ``size`` keys (LRU)."""

    def __init__(self, *, size: int = 100_000) -> None:
        self._last: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._size = size

    def allow(self, key: tuple[str, str], interval: float) -> bool:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < interval:
            return False
        self._last[key] = now
        self._last.move_to_end(key)
        if len(self._last) > self._size:
            self._last.popitem(last=False)
        return True


@dataclass(slots=True)
class Counters:
    """What handlers count, for the gateway's metrics."""

    recovery_from_window: int = 0
    recovery_from_store: int = 0


@dataclass(frozen=True, slots=True)
class Services:
    """Collaborators built once at start-up by the gateway."""

    store: Store
    fanout: Fanout
    tokens: TokenIssuer
    passwords: PasswordHasher
    limits: Limits
    presence: PresenceView
    counters: Counters = field(default_factory=Counters)
    typing: Throttle = field(default_factory=Throttle)


@dataclass(frozen=True, slots=True)
class Context:
    """Who is calling, through which services, and (on a WebSocket) their session."""

    user_id: str
    services: Services
    session: Session | None = None

    def require_session(self) -> Session:
        if self.session is None:
            raise OpError(FORBIDDEN, "this op needs a WebSocket connection")
        return self.session
