"""The SQLite store's health in-process: files gone, waiters never left hanging (issue 21, item 6).

The same failures on live gateway processes are in tests/integration/test_store_health.py.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from storage.errors import Unavailable
from storage.sqlite import SQLiteStore


async def test_a_deleted_folder_makes_the_store_unhealthy_and_refuse_writes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db" / "moosic.db"
    store = SQLiteStore(path)
    await store.open()
    try:
        assert store.health().healthy
        await store.append("room:a", "u1", b"{}", None)
        shutil.rmtree(path.parent)
        with pytest.raises(Unavailable):
            await store.append("room:a", "u1", b"{}", None)
        health = store.health()
        assert not health.healthy
        assert health.reason is not None
        assert "is gone" in health.reason
        assert health.refused_writes == 1
        assert not await store.ping()
        with pytest.raises(Unavailable):
            await store.create_user("alice", "hash")
        with pytest.raises(Unavailable):
            await store.set_like("v1", "u1", liked=True)
        assert store.health().refused_writes == 3
        # Reads still answer (from the file the store still holds).
        assert (await store.position("room:a")).offset >= 1
    finally:
        await store.close()
    assert not store.health().healthy  # closed


async def test_group_commit_waiters_are_answered_when_the_store_closes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "moosic.db")
    await store.open()
    appends = [
        asyncio.ensure_future(store.append("room:a", "u1", b"{}", f"c{n}")) for n in range(500)
    ]
    likes = [asyncio.ensure_future(store.set_like(f"v{n}", "u1", liked=True)) for n in range(200)]
    await asyncio.sleep(0)
    await store.close()
    done, pending = await asyncio.wait(appends + likes, timeout=60)
    assert not pending, f"{len(pending)} waiters left hanging"
    failures = [f.exception() for f in done if f.exception() is not None]
    assert all(isinstance(exc, Unavailable) for exc in failures), failures
    with pytest.raises(Unavailable):
        await store.append("room:a", "u1", b"{}", None)


async def test_a_reopened_store_is_healthy_again(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    store = SQLiteStore(folder / "moosic.db")
    await store.open()
    shutil.rmtree(folder)
    with pytest.raises(Unavailable):
        await store.append("room:a", "u1", b"{}", None)
    await store.close()
    await store.open()
    try:
        assert store.health().healthy
        assert (await store.append("room:a", "u1", b"{}", None)).message.offset == 1
    finally:
        await store.close()
