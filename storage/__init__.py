"""Persistence behind small protocols.

Map of the package:
- ``base``: the repository protocols (messages, accounts, refresh tokens, groups) and records.
- ``errors``: the storage errors handlers translate into client-facing codes.
- ``ids``: time-sortable message and entity ids.
- ``videos``: videos, likes, comments and their totals (records and ``VideoStore``, part of
  ``base.Store``).
- ``follows``: follows, blocks and home feeds (records and ``FollowStore``, part of
  ``base.Store``).
- ``push``: devices that receive push notifications and the push outbox (records,
  ``DeviceStore`` and ``NotificationStore``, part of ``base.Store``).
- ``presence``: the state of presence (who is online, who is in a channel) behind ``Backend``,
  and its in-process twin ``LocalPresence`` (the Redis one is ``redis.presence``).
- ``counts``: the hot counters' state in this process (totals and versions of videos, what
  waits for the store), the in-process twin of ``redis.counts``.
- ``trending``: the videos with the most engagement in a sliding window, overall and per
  country, in this process (the Redis one is ``redis.trending``).
- ``conversations``: what both backends agree on about conversation lists (which channels,
  a DM's users, the list's order key).
- ``sqlite``: the embedded single-node default (one SQLite file in WAL mode): one module per
  aggregate on one typed base, group commit and health.
- ``dynamodb``: the AWS backend (DynamoDB tables, optional DAX reads); see ``docs/storage.md``.
- ``factory``: builds the configured backend.
- ``redis``: the Redis client every Redis user shares (RESP connection, circuit breaker).

Nothing here imports from ``gateway``, ``handlers`` or ``media``.
"""
