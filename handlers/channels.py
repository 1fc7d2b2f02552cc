"""Channel names, their kinds, and who may read or write each.

| name | who may subscribe / read | who may publish |
| --- | --- | --- |
| ``dm:{a}:{b}`` (ids sorted, a < b) | users a and b | users a and b, unless the other blocks them |
| ``group:{id}`` | members | members |
| ``video:{id}`` | anyone signed in | nobody (server events only) |
| ``user:{id}`` | that user | nobody (server notifications only) |
| ``room:{name}`` | anyone signed in | anyone signed in |

Blocks are read through a per-node cache (``services.blocks``, as long as video records): a
block reaches the node that took it at once and every other node within that time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from handlers.base import Context, Services
from handlers.errors import BLOCKED, FORBIDDEN, INVALID_CHANNEL, OpError

ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
"""A user, group or video id (also the key of ``video:``/``user:`` channels)."""
ROOM_NAME_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
_ID_RE = re.compile(ID_PATTERN)
_NAME_RE = re.compile(ROOM_NAME_PATTERN)
MAX_CHANNEL_LENGTH = 140
CHANNEL_PATTERN = (
    rf"^(?:dm:{ID_PATTERN}:{ID_PATTERN}|(?:group|video|user):{ID_PATTERN}"
    rf"|room:{ROOM_NAME_PATTERN})$"
)
"""Every name :func:`parse_channel` accepts matches this (it also wants a DM's ids sorted and
different, which a pattern cannot say); the OpenAPI document uses it."""


class Kind(Enum):
    DM = "dm"
    GROUP = "group"
    VIDEO = "video"
    USER = "user"
    ROOM = "room"


@dataclass(frozen=True, slots=True)
class Channel:
    """A parsed channel name: its kind and the ids in it."""

    name: str
    kind: Kind
    key: str
    """The id after the prefix (group id, video id, user id, room name; for DMs ``a:b``)."""
    peers: tuple[str, str] | None = None


def is_user_id(value: str) -> bool:
    """Tell whether ``value`` can be a user id (the JWT ``sub``)."""
    return _ID_RE.fullmatch(value) is not None


def parse_channel(name: str) -> Channel:
    """Parse and check a channel name; raise ``invalid_channel`` with the reason."""
    if len(name) > MAX_CHANNEL_LENGTH:
        raise OpError(INVALID_CHANNEL, f"channel names are at most {MAX_CHANNEL_LENGTH} characters")
    prefix, sep, rest = name.partition(":")
    try:
        kind = Kind(prefix)
    except ValueError:
        kind = None
    if not sep or kind is None:
        raise OpError(
            INVALID_CHANNEL,
            "channel must be dm:{a}:{b}, group:{id}, video:{id}, user:{id} or room:{name}",
        )
    if kind is Kind.DM:
        a, sep, b = rest.partition(":")
        if not sep or not is_user_id(a) or not is_user_id(b):
            raise OpError(INVALID_CHANNEL, "a DM channel is dm:{a}:{b} with two user ids")
        if not a < b:
            raise OpError(
                INVALID_CHANNEL,
                f"DM user ids must be two different ids in sorted order: dm:{min(a, b)}:{max(a, b)}",
            )
        return Channel(name, kind, rest, (a, b))
    pattern = _NAME_RE if kind is Kind.ROOM else _ID_RE
    if pattern.fullmatch(rest) is None:
        allowed = (
            "letters, digits, '_', '.', '-'" if kind is Kind.ROOM else "letters, digits, '_', '-'"
        )
        raise OpError(INVALID_CHANNEL, f"{kind.value} channel ids are 1-64 of {allowed}")
    return Channel(name, kind, rest)


def dm_channel(a: str, b: str) -> str:
    """Return the canonical DM channel name of two users."""
    low, high = sorted((a, b))
    return f"dm:{low}:{high}"


async def authorize_read(ctx: Context, channel: Channel) -> None:
    """Raise ``forbidden`` unless the caller may subscribe to or read the channel."""
    kind = channel.kind
    if kind is Kind.ROOM or kind is Kind.VIDEO:
        return
    if kind is Kind.USER:
        if channel.key != ctx.user_id:
            raise OpError(FORBIDDEN, "user channels are readable only by their user")
        return
    await _require_member(ctx, channel)


async def authorize_write(ctx: Context, channel: Channel) -> None:
    """Raise ``forbidden`` unless the caller may publish to the channel."""
    kind = channel.kind
    if kind is Kind.ROOM:
        return
    if kind is Kind.VIDEO or kind is Kind.USER:
        raise OpError(FORBIDDEN, f"{kind.value} channels carry server events only")
    await _require_member(ctx, channel)
    if kind is Kind.DM:
        assert channel.peers is not None
        a, b = channel.peers
        peer = b if a == ctx.user_id else a
        if await is_blocked(ctx.services, peer, ctx.user_id):
            raise OpError(BLOCKED, "this user blocked you")


async def _require_member(ctx: Context, channel: Channel) -> None:
    if channel.kind is Kind.DM:
        assert channel.peers is not None
        if ctx.user_id not in channel.peers:
            raise OpError(FORBIDDEN, "only its two users may use a DM channel")
        return
    if not await ctx.services.store.is_member(channel.key, ctx.user_id):
        raise OpError(FORBIDDEN, "only members may use a group channel")


async def is_blocked(services: Services, blocker: str, blocked: str) -> bool:
    """Tell whether ``blocker`` blocks ``blocked``, through the node's short cache."""
    hit, found = services.blocks.lookup((blocker, blocked))
    if hit:
        return bool(found)
    answer = await services.store.is_blocked(blocker, blocked)
    services.blocks.put((blocker, blocked), answer)
    return answer
