"""The embedded default backend: one SQLite file in WAL mode, as one :class:`SQLiteStore`.

The store is its aggregates (messages and channels, conversations, accounts and refresh
tokens, groups, videos and likes, follows and feeds, push devices, the push outbox and push preferences), each a class on
:class:`storage.sqlite.base.SQLiteBase`, which owns the connection and the one thread all SQLite
work runs on. Several gateway processes on one machine may share the file: writes take SQLite's
write lock (``BEGIN IMMEDIATE``), so offsets stay gap-free and unique across processes.

The store watches its own files and errors (:mod:`storage.sqlite.health`): when it cannot keep
writes it says so in :meth:`SQLiteStore.health` and ``ping`` and refuses them with
``Unavailable``.
"""

from __future__ import annotations

from typing import ClassVar

from storage.sqlite.accounts import ACCOUNT_SCHEMA, SQLiteAccounts
from storage.sqlite.conversations import CONVERSATION_SCHEMA, SQLiteConversations
from storage.sqlite.devices import DEVICE_SCHEMA, SQLiteDevices
from storage.sqlite.follows import FOLLOW_SCHEMA, SQLiteFollows
from storage.sqlite.groups import GROUP_SCHEMA, SQLiteGroups
from storage.sqlite.messages import MESSAGE_SCHEMA, SQLiteMessages
from storage.sqlite.outbox import OUTBOX_SCHEMA, SQLiteOutbox
from storage.sqlite.preferences import PREFERENCE_SCHEMA, SQLitePreferences
from storage.sqlite.videos import VIDEO_ADDED_COLUMNS, VIDEO_SCHEMA, SQLiteVideos

SCHEMA = MESSAGE_SCHEMA + ACCOUNT_SCHEMA + GROUP_SCHEMA + CONVERSATION_SCHEMA
"""The chat tables: channels and messages, accounts and tokens, groups, conversations."""


class SQLiteStore(
    SQLiteMessages,
    SQLiteConversations,
    SQLiteAccounts,
    SQLiteGroups,
    SQLiteVideos,
    SQLiteFollows,
    SQLiteDevices,
    SQLiteOutbox,
    SQLitePreferences,
):
    """:class:`storage.base.Store` on one SQLite file."""

    _schema: ClassVar[str] = (
        SCHEMA + VIDEO_SCHEMA + FOLLOW_SCHEMA + DEVICE_SCHEMA + OUTBOX_SCHEMA + PREFERENCE_SCHEMA
    )
    _added_columns: ClassVar[tuple[tuple[str, str, str], ...]] = VIDEO_ADDED_COLUMNS
