"""Build the configured storage backend."""

from __future__ import annotations

from storage.base import Store
from storage.dynamodb import DynamoDBConfig, DynamoDBStore
from storage.sqlite import SQLiteStore


def build_store(
    kind: str,
    *,
    sqlite_path: str,
    max_pending: int,
    dynamodb: DynamoDBConfig | None = None,
    id_tag: str = "",
) -> Store:
    """Return an unopened store of ``kind`` ("sqlite" or "dynamodb").

    ``dynamodb`` configures the DynamoDB backend; its defaults apply when it is None.
    ``id_tag`` is appended to the user and group ids the store mints (a region's tag,
    ``handlers.regions.id_tag``; SQLite only for now).
    """
    if kind == "sqlite":
        return SQLiteStore(sqlite_path, max_pending=max_pending, id_tag=id_tag)
    if id_tag:
        raise ValueError("id tags (regions) are built on the SQLite store only")
    if kind == "dynamodb":
        return DynamoDBStore(dynamodb or DynamoDBConfig())
    raise ValueError(f"unknown store {kind!r}")
