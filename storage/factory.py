"""Build the configured storage backend."""

from __future__ import annotations

from storage.base import Store
from storage.sqlite import SQLiteStore


def build_store(kind: str, *, sqlite_path: str, max_pending: int) -> Store:
    """Return an unopened store of ``kind``."""
    if kind == "sqlite":
        return SQLiteStore(sqlite_path, max_pending=max_pending)
    raise ValueError(f"unknown store {kind!r}")
