"""An SQLite file made before read positions (or videos' views) existed opens and gains them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from storage.sqlite import SCHEMA, SQLiteStore
from storage.videos import VideoCounts


def test_the_schema_script_can_run_again() -> None:
    db = sqlite3.connect(":memory:")
    db.executescript(SCHEMA)
    db.executescript(SCHEMA)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "conversations" in tables


async def test_a_database_without_the_conversations_table_gains_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_schema = SCHEMA.split("-- One row per (user, DM or group channel)")[0]
    db = sqlite3.connect(path)
    db.executescript(old_schema)
    db.execute("INSERT INTO channels VALUES ('dm:u1:u2', 0, 'abcd')")
    db.commit()
    db.close()

    store = SQLiteStore(path)
    await store.open()
    try:
        assert (await store.position("dm:u1:u2")).epoch == "abcd"
        result = await store.append("dm:u1:u2", "u1", b"{}", None)
        assert result.message.offset == 1
        assert await store.read_positions("u1", ["dm:u1:u2"]) == {"dm:u1:u2": 1}
        assert (await store.mark_read("u2", "dm:u1:u2", 1)).moved
    finally:
        await store.close()


async def test_a_videos_table_without_views_and_watch_time_gains_them(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE videos (id TEXT PRIMARY KEY, owner TEXT NOT NULL, title TEXT NOT NULL,"
        " status TEXT NOT NULL, created_at INTEGER NOT NULL, likes INTEGER NOT NULL DEFAULT 0,"
        " comments INTEGER NOT NULL DEFAULT 0, shares INTEGER NOT NULL DEFAULT 0,"
        " counts_version INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
        "INSERT INTO videos VALUES ('v1', 'u1', 'old', 'ready', 1, 5, 2, 1, 8);"
    )
    db.commit()
    db.close()

    saved = VideoCounts(5, 2, 1, 9, views=3, watch_ms=4200)
    for expected in (VideoCounts(5, 2, 1, 8), saved):  # a second opening finds them there
        store = SQLiteStore(path)
        await store.open()
        try:
            video = await store.get_video("v1")
            assert video is not None
            assert video.counts == expected
            await store.save_video_counts({"v1": saved})
        finally:
            await store.close()


def test_processes_opening_one_new_file_together_all_succeed(tmp_path: Path) -> None:
    """Nodes started at the same moment on one new SQLite file all open it (no 'locked')."""
    import asyncio
    import subprocess
    import sys

    script = (
        "import asyncio, sys\n"
        "from storage.sqlite import SQLiteStore\n"
        "async def main():\n"
        "    store = SQLiteStore(sys.argv[1])\n"
        "    await store.open()\n"
        "    await store.append('room:x', 'u', b'{}', None)\n"
        "    await store.close()\n"
        "asyncio.run(main())\n"
    )
    path = str(tmp_path / "shared.db")
    procs = [
        subprocess.Popen([sys.executable, "-c", script, path], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()

    async def offset() -> int:
        store = SQLiteStore(path)
        await store.open()
        try:
            return (await store.position("room:x")).offset
        finally:
            await store.close()

    assert asyncio.run(offset()) == 4
