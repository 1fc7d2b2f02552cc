"""The DynamoDB backend: every aggregate of :class:`storage.base.Store` on DynamoDB tables.

Map of the package:
- ``config``: :class:`DynamoDBConfig`, the backend's settings.
- ``keys``: table names, key layouts and attribute codecs.
- ``schema``: the ``CreateTable`` requests and :func:`create_tables`.
- ``retry``: which failures are retried, with capped jittered backoff.
- ``dax``: eventually consistent reads through DAX on a bounded thread pool.
- ``base``: :class:`~storage.dynamodb.base.DynamoDBBase`, the typed base of every aggregate:
  the client, the tables, retried calls and transactions, DAX reads, channel heads.
- ``messages``: messages and channels (appends by group commit per channel, history, heads).
- ``conversations``: read positions and conversation lists.
- ``accounts``: accounts and refresh tokens.
- ``groups``: groups and their members.
- ``videos``: the ``videos`` table (videos, sharded likes, comments, totals).
- ``follows``: the ``follows`` table (the follow graph, blocks, feeds).
- ``devices``: push devices, in the ``follows`` table (``dv#`` and ``dk#`` items).
- ``outbox``: the push outbox and per-user send caps, in the ``follows`` table (``ob#``, ``pc#``).
- ``preferences``: push preferences and conversation mutes, in the ``follows`` table (``np#``).
- ``store``: :class:`DynamoDBStore`, the :class:`storage.base.Store` made of the aggregates.
- ``__main__``: ``python -m storage.dynamodb create-tables`` for development.

``docs/storage.md`` describes the table design, costs and consistency.
"""

from storage.dynamodb.config import DynamoDBConfig
from storage.dynamodb.dax import CachedReads, DaxClient
from storage.dynamodb.keys import Layout
from storage.dynamodb.messages import MAX_DATA_BYTES
from storage.dynamodb.schema import create_tables, table_definitions
from storage.dynamodb.store import DynamoDBStore

__all__ = [
    "MAX_DATA_BYTES",
    "CachedReads",
    "DaxClient",
    "DynamoDBConfig",
    "DynamoDBStore",
    "Layout",
    "create_tables",
    "table_definitions",
]
