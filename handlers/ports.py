"""The services handlers use, as protocols, and the values that cross them.

Handlers depend on these shapes, never on the gateway classes that implement them: the hub
(:class:`Fanout`, :class:`Session`), presence (:class:`PresenceView`), the hot counters
(:class:`HotCounts`), tokens, revocations, rate limits, password hashing, the feed fan-out, mail (:class:`Mailer`) and push
(:class:`Notifier`), and publishes forwarded to another region (:class:`HomeForwarder`).
The gateway's implementations import their values (:class:`Recent`, :class:`Identity`) from
here, so nothing below the gateway reaches up to it; :class:`UserStatus` is the presence
state's own (``storage/presence.py``).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from storage.follows import FeedItem
from storage.presence import UserStatus
from storage.videos import Video, VideoCounts


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

    async def publish(
        self, channel: str, payload: bytes, offset: int = 0, epoch: str = "", stored_at: int = 0
    ) -> None:
        """Deliver an encoded event to every subscriber on every node.

        With an ``offset`` the event is a stored message: it is delivered in offset order and
        remembered in the channel's recent window. Without one it is an ephemeral push.
        ``stored_at`` is a stored message's store time (ms since the epoch): each node measures
        its delivery lag from it.
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


class TrendingView(Protocol):
    """The videos with the most engagement in a sliding window (``storage/trending.py``)."""

    window: float
    """Seconds the window spans."""

    async def top(self, scope: str, limit: int) -> list[tuple[str, float]]:
        """(video id, score) of the best ``limit`` in ``scope`` (``*`` or a country), best
        first; raises ``Unavailable`` (or a connection error) when the scores cannot be read."""
        ...


class HotCounts(Protocol):
    """Live totals of each video's likes, comments and shares (the gateway's hot counters).

    Handlers count a change only after the store accepted it (a like that changed, a comment
    stored, a share published); the counters push coalesced totals to the video's channel and
    write them to the store in batches.
    """

    async def add(
        self,
        video_id: str,
        *,
        likes: int = 0,
        comments: int = 0,
        shares: int = 0,
        views: int = 0,
        watch_ms: int = 0,
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


@dataclass(frozen=True, slots=True)
class Mail:
    """One plain-text email for one recipient; the gateway adds the sender and the headers."""

    kind: str
    """What it is (``verify_email``, ``password_reset``): for metrics and logs, not sent."""
    to: str
    subject: str
    text: str


class Mailer(Protocol):
    """Mail sent in the background: queued here, delivered later, never on the request's path."""

    def send(self, mail: Mail) -> bool:
        """Queue ``mail`` without waiting; False when the queue is full and it was dropped."""
        ...


class Notifier(Protocol):
    """Push notifications of what happens to users who are not connected
    (:class:`handlers.notify.OfflineNotifier`). Each call queues a decision without waiting and
    says False when nothing was queued (not for push, or the queue is full)."""

    def message(self, channel: str, sender: str, offset: int, data: bytes) -> bool:
        """A stored message: its members (mentioned ones told of the mention); only ``dm:``
        and ``group:`` channels have push."""
        ...

    def follow(self, follower: str, followee: str) -> bool:
        """``follower`` started following ``followee``."""
        ...

    def comment(self, owner: str, video_id: str, author: str, text: str) -> bool:
        """A comment on ``owner``'s video (none when ``author`` is the owner)."""
        ...

    def video(self, owner: str, video_id: str, ready: bool, text: str) -> bool:
        """The owner's video became ready (``text``: its title) or was rejected (why)."""
        ...

    def preferences_changed(self, user_id: str) -> None:
        """The user changed their push preferences: forget what this node remembers of them."""
        ...


class HomeForwarder(Protocol):
    """Publishes sent to the channel's home region (``gateway.regions.forward``)."""

    async def publish(
        self, home: str, channel: str, sender: str, body: bytes, client_msg_id: str | None
    ) -> dict[str, Any]:
        """Have ``home`` store and fan out the message; return its answer (``post``'s shape,
        with the home's offset). Raises ``unavailable`` when the home cannot be reached in
        time, or the home's own error."""
        ...

    def is_fresh(self, channel: str) -> bool:
        """Whether this region's copy of the remote-home channel is current (followed live)."""
        ...

    async def history(
        self, home: str, channel: str, limit: int, before: str | None
    ) -> dict[str, Any]:
        """A page of the channel's history from ``home`` (``history``'s shape); raises as
        :meth:`publish` does."""
        ...


class PasswordHasher(Protocol):
    async def hash(self, password: str) -> str: ...

    async def verify(self, password: str, encoded: str | None) -> bool:
        """Check a password; with ``encoded`` None, spend the same time and say False."""
        ...
