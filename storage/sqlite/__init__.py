"""The embedded single-node default backend: one SQLite file in WAL mode.

Map of the package:
- ``store``: :class:`SQLiteStore`, the :class:`storage.base.Store` the rest of the code gets,
  made of the aggregates below; ``SCHEMA``, the chat tables.
- ``base``: :class:`~storage.sqlite.base.SQLiteBase`, the typed base of every aggregate: the
  connection, the store's one thread, the bound on waiting calls, health, group commit.
- ``messages``: messages and channels (appends by group commit, history, heads).
- ``conversations``: read positions and conversation lists.
- ``accounts``: accounts and refresh tokens.
- ``groups``: groups and their members.
- ``videos``: videos, likes (by group commit), comments and their totals.
- ``follows``: follows, blocks, posts and home feeds.
- ``devices``: push devices (one row per token, bounded per user).
- ``outbox``: the push outbox (pending notifications, leases) and the per-user send caps.
- ``preferences``: push preferences (kinds off, quiet hours) and conversation mutes.
- ``commit``: group commit, the queue that writes appends and likes in batches.
- ``health``: whether the store can keep writes (its files, its errors), and the checks before
  it opens.

Nothing here imports from ``gateway``, ``handlers`` or ``media``.
"""

from storage.sqlite.store import SCHEMA, SQLiteStore

__all__ = ["SCHEMA", "SQLiteStore"]
