"""Which region is a channel's home: the one region that orders it (docs/regions.md).

Homes are read from names, so every node of every region agrees without a lookup and a home
never moves:

| channel | home |
| --- | --- |
| ``dm:{a}:{b}`` | the home region of user ``a`` (the lower id) |
| ``group:{id}`` | the region tagged in the group id (where it was created) |
| ``room:{region}.{name}`` | that region, when it is in the map |
| ``room:{name}`` | the rooms region (``MOOSIC_REGION_ROOMS``, default the original region) |
| ``video:{id}``, ``user:{id}`` | none: regional, not relayed |

With regions configured the store mints user and group ids as ``<ULID>_<region>``
(:func:`id_tag`); region names never hold ``_``. An id with no known tag was made before regions
were turned on, in the original region (the first of the map).
"""

from __future__ import annotations

from dataclasses import dataclass

from handlers.channels import Channel, Kind

TAG_SEPARATOR = "_"


def id_tag(region: str) -> str:
    """What the store appends to the user and group ids it mints in ``region``."""
    return TAG_SEPARATOR + region


@dataclass(frozen=True, slots=True)
class RegionPlan:
    """Every region's name (the original one first), this node's, and the rooms' home."""

    local: str
    names: tuple[str, ...]
    rooms: str

    def __post_init__(self) -> None:
        if self.local not in self.names or self.rooms not in self.names:
            raise ValueError("the local and the rooms region must be in the map")

    @property
    def original(self) -> str:
        return self.names[0]

    def tagged(self, identifier: str) -> str:
        """The region an id is tagged with; the original region for an untagged id."""
        _head, sep, tag = identifier.rpartition(TAG_SEPARATOR)
        return tag if sep and tag in self.names else self.original

    def home(self, channel: Channel) -> str | None:
        """The channel's home region; None for regional channels (``video:``, ``user:``)."""
        kind = channel.kind
        if kind is Kind.DM:
            assert channel.peers is not None
            return self.tagged(channel.peers[0])
        if kind is Kind.GROUP:
            return self.tagged(channel.key)
        if kind is Kind.ROOM:
            region, dot, _name = channel.key.partition(".")
            return region if dot and region in self.names else self.rooms
        return None

    def remote_home(self, channel: Channel) -> str | None:
        """The channel's home when it is another region than this one, else None."""
        home = self.home(channel)
        return None if home is None or home == self.local else home
