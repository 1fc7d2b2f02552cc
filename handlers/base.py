"""What every handler shares: the params base type, the op decorator and the call context.

The service protocols live in :mod:`handlers.ports`; they are importable from here too.

A handler is an async function ``(ctx, params) -> result`` with a declared params schema. It
knows no transport: the gateway decodes and validates a WebSocket frame or a REST request into
the params struct, calls the handler, and encodes the result or the :class:`OpError`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from handlers.cache import TtlCache
from handlers.errors import FORBIDDEN, OpError
from handlers.ports import (
    Fanout,
    Feeds,
    HomeForwarder,
    HotCounts,
    Identity,
    Mailer,
    Notifier,
    PasswordHasher,
    PresenceView,
    RateLimiter,
    Recent,
    Session,
    SessionRevoker,
    TokenIssuer,
    TrendingView,
    Watcher,
)
from storage.base import Store
from storage.presence import UserStatus
from storage.videos import Video

if TYPE_CHECKING:
    from handlers.regions import RegionPlan  # it reads channel names (handlers.channels)
    from handlers.replay import Replay

__all__ = [
    "Context",
    "Fanout",
    "Feeds",
    "HomeForwarder",
    "HotCounts",
    "Identity",
    "Limits",
    "Notifier",
    "Operation",
    "Params",
    "PasswordHasher",
    "PresenceView",
    "RateLimiter",
    "Recent",
    "Result",
    "Services",
    "Session",
    "SessionRevoker",
    "Throttle",
    "TokenIssuer",
    "UserStatus",
    "Watcher",
    "operation",
]
"""This module's own names, and the service protocols of :mod:`handlers.ports` it re-exports."""


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

    async def __call__(self, ctx: Context, params: P) -> Result:
        # Every transport reaches the op through here: one budget per user and op, and one
        # latency observation (an op called by another op is observed under both names).
        observe = ctx.services.observe_op
        started = time.perf_counter()
        try:
            limiter = ctx.services.limiter
            if limiter is not None and self.name in limiter.rules:
                await limiter.check(self.name, ctx.user_id)
            return await self.func(ctx, params)
        finally:
            if observe is not None:
                observe(time.perf_counter() - started, self.name)


def operation(
    params: type[P],
) -> Callable[[Callable[[Context, P], Awaitable[Result]]], Operation[P]]:
    """Declare an op; its name is the params struct's tag.

    An op that needs a live connection (subscribe, watch_presence, auth...) says so by calling
    :meth:`Context.require_session`, which refuses it anywhere else.
    """

    def wrap(func: Callable[[Context, P], Awaitable[Result]]) -> Operation[P]:
        tag = params.__struct_config__.tag
        if not isinstance(tag, str):
            raise TypeError(f"{params.__name__} needs a string tag")
        return Operation(tag, params, func)

    return wrap


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
    video_ready_on_create: bool = False
    """Whether ``create_video`` is served (it makes ready videos with no media: dev and tests)."""
    access_token_ttl: int = 900
    """Seconds an access token lives (how far back "every session of a user" must look)."""
    email_token_ttl: int = 24 * 3600
    """Seconds an email verification token may be used."""
    reset_token_ttl: int = 30 * 60
    """Seconds a password reset token may be used."""
    max_devices: int = 20
    """Push devices kept per user (the least recently registered beyond them are dropped)."""
    max_mutes: int = 200
    """Conversations a user may have muted at once (``MOOSIC_PUSH_MAX_MUTES``)."""


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


@dataclass(frozen=True, slots=True)
class Services:
    """Collaborators built once at start-up by the gateway."""

    store: Store
    fanout: Fanout
    tokens: TokenIssuer
    passwords: PasswordHasher
    limits: Limits
    presence: PresenceView
    hot_counts: HotCounts
    replay: Replay
    """Catches subscribers up (subscribe with ``since``, long polls, the hub's gap fill)."""
    typing: Throttle = field(default_factory=Throttle)
    limiter: RateLimiter | None = None
    sessions: SessionRevoker | None = None
    videos: TtlCache[str, Video | None] = field(default_factory=TtlCache)
    """Video records by id, as each node last read them (status checks on every like)."""
    feeds: Feeds | None = None
    """None: posts reach no feed (a gateway built without the feed fan-out)."""
    blocks: TtlCache[tuple[str, str], bool] = field(default_factory=TtlCache)
    """(blocker, blocked) → blocked, as this node last read it (checked on every DM)."""
    trending: TrendingView | None = None
    """None: no trending (a gateway built without the clickstream's tally)."""
    mailer: Mailer | None = None
    """None: no mail can be sent (the email routes answer ``unavailable``)."""
    notifier: Notifier | None = None
    """None: no push notification is decided (a gateway built without push)."""
    observe_op: Callable[[float, str], None] | None = None
    """Called with (seconds, op name) after every op call, failed ones too (the gateway's
    ``moosic_op_latency_seconds``); None: not measured."""
    regions: RegionPlan | None = None
    """Every region and this one (docs/regions.md); None: one region, every channel is local."""
    forwarder: HomeForwarder | None = None
    """Where publishes to a channel homed in another region go (with ``regions``)."""


@dataclass(frozen=True, slots=True)
class Context:
    """Who is calling, through which services, and (on a WebSocket) their session."""

    user_id: str
    services: Services
    session: Session | None = None
    country: str | None = None
    """The caller's country as the country gate read it (None: unknown, e.g. a private address)."""

    def require_session(self) -> Session:
        if self.session is None:
            raise OpError(FORBIDDEN, "this op needs a WebSocket connection")
        return self.session
