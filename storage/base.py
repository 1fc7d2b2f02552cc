"""Repository protocols and the records they return.

Every backend (``sqlite``, ``dynamodb``) implements :class:`Store`. Handlers depend on these
protocols only, never on a backend module.

Conversation lists and read positions (:class:`ConversationStore`) follow from what the other
methods store, in the same write, so they never drift from it:

- a ``dm:{a}:{b}`` channel enters the lists of ``a`` and ``b`` with its first message
  (:meth:`MessageStore.append` that creates the channel);
- a ``group:{id}`` channel enters a member's list when the group is created with them or they are
  added, and leaves it when they are removed (:class:`GroupStore`); a member added later starts
  with everything already in the channel read;
- appending to a ``dm:`` or ``group:`` channel moves the sender's read position to the message
  (their own messages are never unread).

Videos, likes, comments and their totals are :class:`storage.videos.VideoStore`; follows,
blocks, posts and home feeds are :class:`storage.follows.FollowStore`; push devices are
:class:`storage.push.DeviceStore`, the push outbox :class:`storage.push.NotificationStore` and
push preferences :class:`storage.push.PreferenceStore`. :class:`Store` includes them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from storage.follows import FollowStore
from storage.push import DeviceStore, NotificationStore, PreferenceStore
from storage.videos import VideoStore


@dataclass(frozen=True, slots=True)
class Message:
    """One stored chat event in a channel."""

    id: str
    channel: str
    offset: int
    sender: str
    data: bytes
    """The message body: a JSON object, encoded once by the handler and stored as given."""
    client_msg_id: str | None
    ts: int
    """Server time of storage, milliseconds since the epoch."""


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What :meth:`MessageStore.append` did."""

    message: Message
    epoch: str
    duplicate: bool
    """True when ``client_msg_id`` matched an earlier message, which is returned unchanged."""


@dataclass(frozen=True, slots=True)
class ChannelPosition:
    """The last offset in a channel and the channel's epoch ("" before its first event)."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class ReadMark:
    """What :meth:`ConversationStore.mark_read` did."""

    last_read: int
    """The user's read position in the channel after the call."""
    last_offset: int
    """The channel's last offset, as seen by the call (``last_read`` never exceeds it)."""
    moved: bool
    """True when this call raised ``last_read``."""


@dataclass(frozen=True, slots=True)
class Conversation:
    """One entry of a user's conversation list, with its channel head and read position."""

    channel: str
    last_offset: int
    epoch: str
    """The channel's epoch ("" before its first message)."""
    last_ts: int | None
    """Time of the channel's last message in milliseconds (from its id); None when empty."""
    last_read: int
    name: str | None
    """The group's name for ``group:`` channels (None when the group is gone); None for DMs."""
    cursor: str
    """Opaque position in the list: pass it as ``before`` to get the entries after this one."""


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """What :meth:`Store.health` says: whether the store may be trusted with writes now."""

    healthy: bool
    reason: str | None = None
    """Why not (for the log and operators; never sent to clients)."""
    refused_writes: int = 0
    """Calls refused with :class:`storage.errors.Unavailable` because the store was unhealthy."""


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    password_hash: str
    created_at: int
    email: str | None = None
    """The account's email address, normalised by the handler; None when it has none."""
    email_verified: bool = False
    """True once the address's owner used a verification token; a verified address belongs to
    one account only."""


@dataclass(frozen=True, slots=True)
class Group:
    id: str
    name: str
    owner: str
    created_at: int


class RefreshState(Enum):
    """Outcome of presenting a refresh token."""

    OK = "ok"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REUSED = "reused"
    """Already used or revoked: the token's whole family has been revoked."""


@dataclass(frozen=True, slots=True)
class RefreshUse:
    state: RefreshState
    user_id: str | None = None
    family_id: str | None = None


class OneTimeState(Enum):
    """Outcome of presenting a one-time (email) token."""

    OK = "ok"
    UNKNOWN = "unknown"
    """No such token, or one made for another purpose."""
    EXPIRED = "expired"
    USED = "used"


@dataclass(frozen=True, slots=True)
class OneTimeUse:
    state: OneTimeState
    user_id: str | None = None
    subject: str | None = None
    """What the token was made for (the address to verify; the password it may replace)."""


class MessageStore(Protocol):
    async def append(
        self, channel: str, sender: str, data: bytes, client_msg_id: str | None
    ) -> AppendResult:
        """Store a message with the channel's next offset, idempotent on (channel, sender, client_msg_id)."""
        ...

    async def history(self, channel: str, *, limit: int, before: str | None) -> list[Message]:
        """Return up to ``limit`` messages older than message id ``before``, newest first."""
        ...

    async def read_since(self, channel: str, offset: int, *, limit: int) -> list[Message]:
        """Return up to ``limit`` messages with an offset above ``offset``, oldest first."""
        ...

    async def position(self, channel: str) -> ChannelPosition:
        """Return the channel's last offset and epoch."""
        ...

    async def positions(self, channels: list[str]) -> dict[str, ChannelPosition]:
        """Return :meth:`position` of every channel given (``(0, "")`` for unknown ones)."""
        ...


class MessageReplica(Protocol):
    """A copy of channels another region orders (docs/regions.md): written by the relay only."""

    async def replicate(self, channel: str, epoch: str, messages: list[Message]) -> ChannelPosition:
        """Add the home's messages (its ids, offsets and times) in offset order, and return the
        channel's position after them.

        Messages at or below the channel's last offset are skipped (a second copy changes
        nothing); the first one that would leave a gap stops the batch. A new ``epoch`` (the
        home reset the channel's history) empties the copy first.
        """
        ...


class AccountStore(Protocol):
    async def create_user(self, username: str, password_hash: str) -> User:
        """Create an account; raise :class:`storage.errors.Conflict` when the name is taken."""
        ...

    async def get_user(self, user_id: str) -> User | None: ...

    async def get_user_by_username(self, username: str) -> User | None: ...

    async def get_user_by_email(self, email: str) -> User | None:
        """The account whose *verified* address is ``email`` (None: none, or only unverified)."""
        ...

    async def set_email(self, user_id: str, email: str) -> User | None:
        """Give the account the address ``email``, unverified, and return the account.

        The same address again leaves it as it is (a verified one stays verified). A verified
        address the account had before is released. Raises :class:`storage.errors.Conflict`
        when another account has verified ``email``; None when there is no such account.
        """
        ...

    async def verify_email(self, user_id: str, email: str) -> User | None:
        """Mark the account's address verified, if it is still ``email``; return the account.

        None when the account is gone or its address is no longer ``email``; raises
        :class:`storage.errors.Conflict` when another account verified ``email`` first.
        """
        ...

    async def set_password(self, user_id: str, password_hash: str) -> bool:
        """Replace the account's password hash; False when there is no such account."""
        ...


class RefreshTokenStore(Protocol):
    async def add_refresh_token(
        self, token_hash: str, user_id: str, family_id: str, expires_at: int
    ) -> None:
        """Record a new refresh token (``expires_at`` in seconds since the epoch)."""
        ...

    async def use_refresh_token(self, token_hash: str, now: int) -> RefreshUse:
        """Mark a token used, once; a second use revokes its family and says REUSED."""
        ...

    async def revoke_family(self, family_id: str) -> None: ...

    async def list_sessions(
        self, user_id: str, *, since: int, limit: int, after: str | None = None
    ) -> list[str]:
        """The user's login sessions (token families) with a token expiring after ``since``.

        Revoked families may be among them. Sorted by family id, at most ``limit``, those after
        ``after`` (the last id of the previous page).
        """
        ...


class OneTimeTokenStore(Protocol):
    """Single-use tokens mailed to users (email verification, password reset), by hash."""

    async def add_one_time_token(
        self, token_hash: str, purpose: str, user_id: str, subject: str, expires_at: int
    ) -> None:
        """Record a token (``expires_at`` in seconds since the epoch)."""
        ...

    async def use_one_time_token(self, token_hash: str, purpose: str, now: int) -> OneTimeUse:
        """Use a token once: OK the first time before it expires, USED after that."""
        ...


class GroupStore(Protocol):
    async def create_group(self, name: str, owner: str, members: list[str]) -> Group:
        """Create a group owned by ``owner``; the owner is always a member."""
        ...

    async def get_group(self, group_id: str) -> Group | None: ...

    async def list_members(self, group_id: str, *, limit: int) -> list[str]: ...

    async def count_members(self, group_id: str) -> int: ...

    async def is_member(self, group_id: str, user_id: str) -> bool: ...

    async def add_member(self, group_id: str, user_id: str) -> bool:
        """Add a member; return False when already a member."""
        ...

    async def remove_member(self, group_id: str, user_id: str) -> bool:
        """Remove a member; return False when not a member."""
        ...


class ConversationStore(Protocol):
    """Read positions per (user, channel) and each user's list of DM and group conversations.

    A read position is the offset up to which the user has read the channel (0 at first); it
    only ever grows and never exceeds the channel's last offset. List entries are made and
    removed by the writes described in this module's docstring, never directly.
    """

    async def mark_read(self, user_id: str, channel: str, offset: int) -> ReadMark:
        """Raise the user's read position to ``offset``, clamped to the channel's last offset.

        A lower offset (or one at or below 0) leaves the position where it is.
        """
        ...

    async def read_positions(self, user_id: str, channels: list[str]) -> dict[str, int]:
        """Return the user's read position in every channel given (0 where there is none)."""
        ...

    async def list_conversations(
        self, user_id: str, *, limit: int, before: str | None
    ) -> list[Conversation]:
        """Return up to ``limit`` of the user's conversations, newest entry in the list first.

        The order is the order in which conversations entered the list (stable: messages do not
        reorder it); ``before`` is the ``cursor`` of the last entry of the previous page.
        """
        ...


class Store(
    MessageStore,
    AccountStore,
    RefreshTokenStore,
    OneTimeTokenStore,
    GroupStore,
    ConversationStore,
    VideoStore,
    FollowStore,
    DeviceStore,
    NotificationStore,
    PreferenceStore,
    Protocol,
):
    """Everything the gateway persists, with a lifecycle."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """Return True when the backend answers and :meth:`health` says healthy (``/readyz``)."""
        ...

    def health(self) -> StoreHealth:
        """The store's own view of itself, without I/O (cheap enough for every scrape).

        An unhealthy store refuses writes with :class:`storage.errors.Unavailable` rather than
        acknowledge what it may not keep, and logs an ERROR once when it becomes unhealthy.
        """
        ...
