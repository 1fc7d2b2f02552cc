"""Business ops, one module per domain; no transport, no aiohttp.

Map of the package:
- ``base``: params base type, ``@operation``, the call ``Context`` and ``Services``.
- ``ports``: the protocols of the services handlers use (fan-out, sessions, presence, hot
  counters, tokens, revocations, rate limits, passwords, feeds, mail, push) and the values
  they carry.
- ``errors``: the stable error codes shared by WebSocket and REST.
- ``messages``: every frame the server sends: the reply and error envelopes and each push
  (event, presence, join/leave, typing, read, comment, feed, counts, unsubscribed).
- ``channels``: channel names and who may read or write them.
- ``chat``: subscribe, unsubscribe, publish, history, events (long poll), ping.
- ``replay``: subscribe, replay, go live: the one owner of catching a subscriber up (from the
  recent window, else the store), for ``subscribe`` with ``since``, long polls and the hub's
  gap fill.
- ``regions``: which region is a channel's home (the one that orders it), read from names.
- ``groups``: group conversations and their members.
- ``receipts``: read positions with their pushes, and the conversation list with unread counts.
- ``auth`` and ``passwords``: accounts, refresh-token rotation, logout, ``auth`` (a fresh token
  for a live socket), scrypt hashing.
- ``recovery``: an email address on the account and its verification, password reset by
  email (single-use hashed tokens; a reset ends every session of the account).
- ``social``: videos, likes, comments and shares (counted through the gateway's hot counters).
- ``follows`` and ``feed``: the follow graph and blocks; home feeds (hybrid fan-out: written
  into followers' feeds in background batches, or merged in at read time for wide authors).
- ``devices``: push devices (register, list, delete; bounded per user).
- ``notify``: who is told by push of a DM or group message, a mention, a new follower, a
  comment on their video, their video ready or rejected (offline users, as their preferences
  allow), written to the store's push outbox, collapsed per key.
- ``preferences``: push preferences (kinds on or off, quiet hours) and conversation mutes, and
  the rules the decider and the sender apply.
- ``cache``: the short per-node cache of records read on every request (videos).
- ``presence``: who is in a channel, contacts' online status and its changes, typing.
- ``media``: upload forms, playback links of ready videos, and the video ledger the media
  backends record into.
- ``trending``: the videos with the most engagement in the last window, overall or per country.
- ``events``: the clickstream intake (event schemas, dedupe, enrichment) and the ``track`` op
  factory (bound to a node's buffer, so not in ``OPERATIONS`` yet).

``OPERATIONS`` lists every op a signed-in client may call by name.
"""

from handlers import (
    auth,
    chat,
    devices,
    follows,
    groups,
    preferences,
    presence,
    receipts,
    social,
    trending,
)
from handlers.base import Operation

OPERATIONS: tuple[Operation, ...] = (  # type: ignore[type-arg]
    chat.subscribe,
    chat.unsubscribe,
    chat.publish,
    chat.history,
    chat.ping,
    groups.create_group,
    groups.get_group,
    groups.add_member,
    groups.remove_member,
    presence.presence,
    presence.watch_presence,
    presence.unwatch_presence,
    presence.typing,
    receipts.read,
    receipts.conversations,
    auth.reauthenticate,
    social.create_video,
    social.get_video,
    social.like,
    social.unlike,
    social.like_status,
    social.comment,
    social.comments,
    social.delete_comment,
    social.share,
    follows.follow,
    follows.unfollow,
    follows.followers,
    follows.following,
    follows.follow_counts,
    follows.block,
    follows.unblock,
    follows.feed,
    follows.reshare,
    trending.trending,
    devices.register_device,
    devices.unregister_device,
    devices.devices,
    preferences.notification_settings,
    preferences.set_notification_settings,
    preferences.mute_conversation,
    preferences.unmute_conversation,
)
