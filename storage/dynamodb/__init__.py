"""The DynamoDB backend: messages, channels, accounts, refresh tokens and groups on DynamoDB.

Map of the package:
- ``config``: :class:`DynamoDBConfig`, the backend's settings.
- ``keys``: table names, key layouts and attribute codecs.
- ``schema``: the ``CreateTable`` requests and :func:`create_tables`.
- ``retry``: which failures are retried, with capped jittered backoff.
- ``dax``: eventually consistent reads through DAX on a bounded thread pool.
- ``store``: :class:`DynamoDBStore`, the :class:`storage.base.Store` implementation.
- ``videos``: the ``videos`` table (videos, sharded likes, comments, totals), mixed into the store.
- ``follows``: the ``follows`` table (the follow graph, blocks, feeds), mixed into the store.
- ``__main__``: ``python -m storage.dynamodb create-tables`` for development.

``docs/storage.md`` describes the table design, costs and consistency.
"""

from storage.dynamodb.config import DynamoDBConfig
from storage.dynamodb.dax import CachedReads, DaxClient
from storage.dynamodb.keys import Layout
from storage.dynamodb.schema import create_tables, table_definitions
from storage.dynamodb.store import MAX_DATA_BYTES, DynamoDBStore

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
