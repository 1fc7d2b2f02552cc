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

from handlers.cache import TtlCache
from handlers.errors import FORBIDDEN, OpError
from storage.base import Store
from storage.follows import FeedItem
from storage.videos import Video, VideoCounts


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
        limiter = ctx.services.limiter
        if limiter is not None and self.name in limiter.rules:
            # Every transport reaches the op through here: one budget per user and op.
            await limiter.check(self.name, ctx.user_id)
        return await self.func(ctx, params)


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

    def renew(self, identity: Identity) -> None:
        """Carry on under a fresh access token of the same user (new expiry and session)."""
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


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified access token speaks for, until when, and for which login session."""

    user_id: str
    expires_at: int
    """Seconds since the epoch."""
    session_id: str | None = None
    """The ``sid`` claim: the login (refresh-token family) the token belongs to; logout revokes
    it. None for tokens without one (issued by an external identity provider)."""


class HotCounts(Protocol):
    """Live totals of each video's likes, comments and shares (the gateway's hot counters).

    Handlers count a change only after the store accepted it (a like that changed, a comment
    stored, a share published); the counters push coalesced totals to the video's channel and
    write them to the store in batches.
    """

    async def add(
        self, video_id: str, *, likes: int = 0, comments: int = 0, shares: int = 0
    ) -> None:
        """Count a change; never raises (a change that cannot be counted now is counted later)."""
        ...

    async def totals(self, video_id: str) -> VideoCounts | None:
        """Return the live totals, or None when no counter holds the video (the stored totals
        are exact then)."""
        ...


class Feeds(Protocol):
    """Posts on their way to followers' feeds (:class:`handlers.feed.FeedFanout`)."""

    async def publish(self, video: Video, by: str) -> FeedItem | None:
        """Post the video as ``by`` (its owner, or a user re-sharing it) and deliver it to their
        followers in the background; None when ``by`` posted this video already. Returns
        before any follower is reached."""
        ...


class TokenIssuer(Protocol):
    def issue_access_token(self, user_id: str, session_id: str) -> tuple[str, int]:
        """Return a signed access token of the login ``session_id`` and its lifetime in seconds."""
        ...

    def verify(self, token: str) -> Identity:
        """Return the token's identity or raise ``unauthorized`` / ``token_expired``."""
        ...


class RateLimiter(Protocol):
    """Token buckets by rule and subject (a user id, a client address, a username)."""

    @property
    def rules(self) -> frozenset[str]:
        """The names of the rules in force; others are not limited."""
        ...

    async def check(self, rule: str, subject: str) -> None:
        """Take one token from ``subject``'s bucket of ``rule``, or raise ``rate_limited``."""
        ...


class SessionRevoker(Protocol):
    """Login sessions ended before their tokens expire (logout, refresh-token reuse)."""

    def is_revoked(self, session_id: str) -> bool: ...

    async def revoke(self, session_id: str, user_id: str) -> None:
        """Refuse the session's access tokens from now on and close its sockets, on every node."""
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
    video_ready_on_create: bool = False
    """Whether ``create_video`` is served (it makes ready videos with no media: dev and tests)."""


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
    hot_counts: HotCounts
    counters: Counters = field(default_factory=Counters)
    typing: Throttle = field(default_factory=Throttle)
    limiter: RateLimiter | None = None
    sessions: SessionRevoker | None = None
    videos: TtlCache[str, Video | None] = field(default_factory=TtlCache)
    """Video records by id, as each node last read them (status checks on every like)."""
    feeds: Feeds | None = None
    """None: posts reach no feed (a gateway built without the feed fan-out)."""
    blocks: TtlCache[tuple[str, str], bool] = field(default_factory=TtlCache)
    """(blocker, blocked) → blocked, as this node last read it (checked on every DM)."""


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
