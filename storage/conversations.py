"""What both backends agree on about conversation lists: which channels are conversations, who a
DM's users are, and the key that orders a user's list.

The channel names follow ``handlers.channels`` (``dm:{a}:{b}`` with sorted ids, ``group:{id}``);
the store trusts that handlers checked them.
"""

from __future__ import annotations

DM_PREFIX = "dm:"
GROUP_PREFIX = "group:"
LIST_KEY_DIGITS = 15
"""Width of the millisecond timestamp that starts a list key (enough until year 33658)."""


def is_conversation(channel: str) -> bool:
    """Tell whether the channel has read positions and list entries (DMs and groups)."""
    return channel.startswith((DM_PREFIX, GROUP_PREFIX))


def dm_users(channel: str) -> tuple[str, str] | None:
    """Return the two users of a ``dm:{a}:{b}`` channel, or None for any other channel."""
    if not channel.startswith(DM_PREFIX):
        return None
    a, sep, b = channel[len(DM_PREFIX) :].partition(":")
    if not sep or not a or not b or ":" in b:
        return None
    return a, b


def group_channel(group_id: str) -> str:
    return f"{GROUP_PREFIX}{group_id}"


def group_id(channel: str) -> str | None:
    """Return the group id of a ``group:{id}`` channel, or None for any other channel."""
    if not channel.startswith(GROUP_PREFIX):
        return None
    return channel[len(GROUP_PREFIX) :] or None


def list_key(joined_ms: int, channel: str) -> str:
    """Return the key that orders a user's list: when the entry was made, then the channel.

    Entries are listed by this key, highest first; it is also the page cursor. Compared as
    bytes (UTF-8) by both backends, so the order is the same in both.
    """
    return f"{joined_ms:0{LIST_KEY_DIGITS}d}#{channel}"
