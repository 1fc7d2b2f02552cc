"""Table names, key layouts and attribute codecs: the one place that knows how items are keyed.

Every partition key starts with a one-letter kind and ``#``, so items of different kinds never
collide, and user-controlled parts sit where each key decodes one way only:
- ``m#{channel}#{bucket}``: a message; sort key = its id (a ULID). ``bucket`` is the id's
  millisecond timestamp divided by :attr:`Layout.bucket_ms` (a UTC day); digits end the key,
  so the channel is everything before the last ``#``.
- ``o#{channel}#{block}``: the offset index; sort key = the offset zero-padded to 16 digits, the
  item holds the message id; ``block`` = offset // :attr:`Layout.offset_block`.
- ``c#{len}:{channel}#{len}:{sender}#{client_msg_id}``: the idempotency record of one client
  message id (length prefixes keep a ``#`` inside a name unambiguous).
- ``v#{user_id}`` (groups table): the user's read positions and conversation list; sort key =
  the channel. Group ids (ULIDs) never contain ``#``, so these never meet a group's items.
- videos table: ``v#{video}`` (the record), ``l#{video}#{shard}`` (likes, sort key = user id),
  ``c#{video}`` (comments, sort key = comment id), ``k#...`` (comments' client-id records).
- accounts table: ``u#{user_id}`` and ``n#{username}`` (the account, whole, under each key),
  ``e#{email}`` (a verified address's claim: the account's id).
- refresh_tokens table: ``t#{hash}`` (a refresh token), ``f#{family}`` (a revoked family),
  ``x#{hash}`` (a one-time email token), all with TTL ``purge_at``.
- follows table: ``fr#{user}`` / ``fg#{user}`` (followers / following, sort key = the other
  user), ``n#{user}`` (totals), ``b#{user}`` (blocks), ``p#{user}`` (posts), ``q#{user}#{video}`` (posted once), ``w#{user}`` (wide
  author marker), ``f#{user}`` (feed items, sort key = item id, TTL ``purge_at``), ``s#{user}``
  (the user's login sessions, sort key = family id, TTL ``purge_at``: the one per-user index
  with a sort key and a TTL, so "every session of a user" is one query), ``dv#{user}`` (the
  user's push devices, sort key = device id) and ``dk#{token_key}`` (a push token's owner: the
  user and device id; sort key :data:`DEVICE_TOKEN_SK`), ``ob#{shard}`` (the push outbox,
  sort key ``{user}#{conversation}``, spread over :data:`OUTBOX_SHARDS` partitions by user) and
  ``pc#{user}`` (sends per minute, sort key = the minute, TTL ``purge_at``), ``np#{user}``
  (push preferences: sort key :data:`PREFERENCES_SK` for the settings, ``m#{conversation}``
  for each mute, so one query reads them all).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from storage import ids

Item = dict[str, Any]
"""An item in DynamoDB's wire format (``{"name": {"S": "value"}}``)."""

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
"""Crockford base32, the alphabet of :mod:`storage.ids`; in ASCII order, so text order is id order."""
OFFSET_DIGITS = 16


@dataclass(frozen=True, slots=True)
class Layout:
    """How messages spread over partition keys; part of the stored format, not a tuning knob.

    Changing either number for tables that hold data orphans what was written before. Tests use
    small values to cross partitions with a handful of messages.
    """

    bucket_ms: int = 86_400_000
    """Messages of one channel and one UTC day share a partition key."""
    offset_block: int = 1000
    """Offset-index entries of one channel per partition key."""

    def message_pk(self, channel: str, message_id: str) -> str:
        return f"m#{channel}#{ids.timestamp_ms(message_id) // self.bucket_ms}"

    def message_key(self, channel: str, message_id: str) -> Item:
        return {"pk": {"S": self.message_pk(channel, message_id)}, "sk": {"S": message_id}}

    def offset_pk(self, channel: str, offset: int) -> str:
        return f"o#{channel}#{offset // self.offset_block}"

    def block_end(self, offset: int) -> int:
        """Return the last offset sharing a partition key with ``offset``."""
        return (offset // self.offset_block + 1) * self.offset_block - 1


def next_id(identifier: str) -> str:
    """Return the id right after ``identifier`` (same length, one more in base 32)."""
    digits = [ALPHABET.index(c) for c in identifier]
    position = len(digits) - 1
    while position >= 0 and digits[position] == len(ALPHABET) - 1:
        digits[position] = 0
        position -= 1
    if position < 0:
        raise ValueError(f"no id after {identifier}")
    digits[position] += 1
    return "".join(ALPHABET[d] for d in digits)


MESSAGES = "messages"
CHANNELS = "channels"
ACCOUNTS = "accounts"
REFRESH_TOKENS = "refresh_tokens"
GROUPS = "groups"
VIDEOS = "videos"
FOLLOWS = "follows"
TABLES = (MESSAGES, CHANNELS, ACCOUNTS, REFRESH_TOKENS, GROUPS, VIDEOS, FOLLOWS)
GROUP_MEMBERS_BY_JOINED = "by_joined"
"""Local secondary index of the groups table: members in join order."""
PURGE_ATTRIBUTE = "purge_at"
"""TTL attribute of the refresh-token table (seconds since the epoch)."""


def offset_sk(offset: int) -> str:
    return f"{offset:0{OFFSET_DIGITS}d}"


def client_pk(channel: str, sender: str, client_msg_id: str) -> str:
    return f"c#{len(channel)}:{channel}#{len(sender)}:{sender}#{client_msg_id}"


def user_pk(user_id: str) -> str:
    return f"u#{user_id}"


def username_pk(username: str) -> str:
    return f"n#{username}"


def token_pk(token_hash: str) -> str:
    return f"t#{token_hash}"


def family_pk(family_id: str) -> str:
    return f"f#{family_id}"


def email_pk(email: str) -> str:
    """The claim of a verified address (accounts table): names the account that holds it."""
    return f"e#{email}"


def one_time_pk(token_hash: str) -> str:
    """A one-time email token (refresh_tokens table)."""
    return f"x#{token_hash}"


def sessions_pk(user_id: str) -> str:
    """The user's login sessions (follows table); sort key = the family id."""
    return f"s#{user_id}"


GROUP_SK = "group"
COUNT_SK = "count"


def member_sk(user_id: str) -> str:
    return f"m#{user_id}"


def conversation_pk(user_id: str) -> str:
    """Partition of one user's read positions and list entries (in the groups table)."""
    return f"v#{user_id}"


def conversation_key(user_id: str, channel: str) -> Item:
    """Key of one user's read position and list entry for ``channel``."""
    return {"pk": s(conversation_pk(user_id)), "sk": s(channel)}


def joined_key(joined_at: int, user_id: str) -> str:
    """Sort key of the join-order index: fixed-width time first, then the user id."""
    return f"{joined_at:012d}#{user_id}"


# -- videos table: every key of a video starts with its id, so kinds never meet -------------

VIDEO_SK = "video"
LIKE_SHARDS = 16
"""Partition keys one video's likes are spread over: each takes at most 1,000 writes a second,
so a video can take 16,000 likes a second before DynamoDB throttles. Part of the format."""


def video_pk(video_id: str) -> str:
    """The video record (sort key :data:`VIDEO_SK`)."""
    return f"v#{video_id}"


def like_pk(video_id: str, user_id: str) -> str:
    """One shard of a video's likes; sort key = the user id."""
    return f"l#{video_id}#{like_shard(user_id)}"


def like_shard(user_id: str) -> int:
    return zlib.crc32(user_id.encode()) % LIKE_SHARDS


def like_shard_pk(video_id: str, shard: int) -> str:
    return f"l#{video_id}#{shard}"


def comment_pk(video_id: str) -> str:
    """A video's comments; sort key = the comment id (a ULID: newest last)."""
    return f"c#{video_id}"


def comment_client_pk(video_id: str, author: str, client_msg_id: str) -> str:
    """The idempotency record of one client comment id (sort key ``k``)."""
    return f"k#{len(video_id)}:{video_id}#{len(author)}:{author}#{client_msg_id}"


# -- attribute codecs ------------------------------------------------------------------------


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def b(value: bytes) -> dict[str, bytes]:
    return {"B": value}


def boolean(value: bool) -> dict[str, bool]:
    return {"BOOL": value}


def get_s(item: Item, name: str) -> str:
    return str(item[name]["S"])


def get_n(item: Item, name: str) -> int:
    return int(item[name]["N"])


def get_n_or(item: Item, name: str, default: int) -> int:
    """A number attribute that items written by older versions may lack."""
    return get_n(item, name) if name in item else default


def get_b(item: Item, name: str) -> bytes:
    return bytes(item[name]["B"])


def opt_s(item: Item, name: str) -> str | None:
    return get_s(item, name) if name in item else None


# -- follows table: the graph, posts and feeds; the kind letter keeps them apart --------------


def followers_pk(user_id: str) -> str:
    """The user's followers; sort key = the follower's id."""
    return f"fr#{user_id}"


def following_pk(user_id: str) -> str:
    """Whom the user follows; sort key = the followed user's id."""
    return f"fg#{user_id}"


FOLLOW_COUNT_SK = "n"


def follow_count_pk(user_id: str) -> str:
    """The user's totals (``followers``, ``following``); sort key :data:`FOLLOW_COUNT_SK`."""
    return f"n#{user_id}"


def block_pk(user_id: str) -> str:
    """Whom the user blocks; sort key = the blocked user's id."""
    return f"b#{user_id}"


def post_pk(user_id: str) -> str:
    """The user's timeline of posts; sort key = the item id (time-sortable)."""
    return f"p#{user_id}"


POSTED_SK = "p"


def posted_pk(user_id: str, video_id: str) -> str:
    """The marker that the user posted (or re-shared) the video once; sort key
    :data:`POSTED_SK`. Video ids never contain ``#``: the user id is everything before the last."""
    return f"q#{user_id}#{video_id}"


WIDE_SK = "w"


def wide_pk(user_id: str) -> str:
    """The marker of an author whose posts are merged in at read time; sort key :data:`WIDE_SK`."""
    return f"w#{user_id}"


def feed_pk(user_id: str) -> str:
    """The user's home feed; sort key = the item id; ``purge_at`` expires it (TTL)."""
    return f"f#{user_id}"


DEVICE_TOKEN_SK = "k"


def devices_pk(user_id: str) -> str:
    """The user's push devices (follows table); sort key = the device id."""
    return f"dv#{user_id}"


def device_token_pk(token_key: str) -> str:
    """The owner of one push token (follows table): ``user`` and ``device``."""
    return f"dk#{token_key}"


OUTBOX_SHARDS = 16
"""Partitions the push outbox is spread over (by user): every drainer reads them all, so this
bounds the reads of an empty poll. Part of the format."""


def outbox_pk(user_id: str) -> str:
    """The outbox partition of the user's pending notifications."""
    return f"ob#{zlib.crc32(user_id.encode()) % OUTBOX_SHARDS}"


def outbox_shard_pk(shard: int) -> str:
    return f"ob#{shard}"


def outbox_sk(user_id: str, conversation: str) -> str:
    """User ids never contain ``#``: the user is everything before the first."""
    return f"{user_id}#{conversation}"


def push_cap_pk(user_id: str) -> str:
    """The user's sends per minute; sort key = the minute."""
    return f"pc#{user_id}"


PREFERENCES_SK = "settings"
"""Sort key of a user's push settings under :func:`push_preferences_pk` (mutes are ``m#…``)."""


def push_preferences_pk(user_id: str) -> str:
    """The user's push settings and conversation mutes (follows table)."""
    return f"np#{user_id}"


def mute_sk(conversation: str) -> str:
    return f"m#{conversation}"
