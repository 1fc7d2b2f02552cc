"""The typed base of every SQLite aggregate: the connection, its one thread, the health rules.

:class:`SQLiteBase` owns what the aggregates share and declares what they may use:

- ``_ids``: the id generator (on the store's thread only: it is not thread-safe);
- ``_conn()``: the connection, on the store's thread (``Unavailable`` when closed);
- ``_run(fn)``: run ``fn`` on the store's thread, within the ``max_pending`` bound and under
  the health rules (:meth:`SQLiteBase._guarded`);
- ``_group_commit(write)`` and ``_queued(commit, item)``: writes of one kind in batches
  (:mod:`storage.sqlite.commit`), under the same bound and rules;
- :func:`immediate`, :func:`now_ms` and :func:`chunks` for the SQL itself.

All SQLite work runs on one dedicated thread that owns the connection, so the event loop never
blocks on disk. Calls waiting for that thread are bounded (``max_pending``); past the bound a
caller waits for a slot, which pushes back on the clients that cause the load.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar, TypeVar

from storage.base import StoreHealth
from storage.errors import Unavailable
from storage.ids import IdGenerator
from storage.sqlite.commit import GroupCommit
from storage.sqlite.health import CHECK_INTERVAL, HEALTH_SCHEMA, Health, check_files, submit

T = TypeVar("T")
I = TypeVar("I")
R = TypeVar("R")
log = logging.getLogger("storage.sqlite")
CONNECT_ATTEMPTS = 20
"""Tries to open a file another process is initialising at the same moment (about 10 s)."""

_IN_CHUNK = 500
"""Values per ``IN (...)`` list, well below SQLite's limit on bound parameters."""


def now_ms() -> int:
    return int(time.time() * 1000)


@contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[None]:
    """Run the block as one write transaction, taken at once (``BEGIN IMMEDIATE``)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def chunks(values: list[str]) -> Iterator[list[str]]:
    """The distinct ``values`` in lists short enough for one ``IN (...)``."""
    unique = list(dict.fromkeys(values))
    for start in range(0, len(unique), _IN_CHUNK):
        yield unique[start : start + _IN_CHUNK]


class SQLiteBase:
    """One SQLite file, its connection and the thread that owns it; the aggregates' base."""

    _schema: ClassVar[str] = ""
    _added_columns: ClassVar[tuple[tuple[str, str, str], ...]] = ()
    """(table, column, declaration) added after a table was first made: added when missing."""
    """The tables of the aggregates (the store's class names them all); health's come after."""

    def __init__(
        self, path: str | os.PathLike[str], *, max_pending: int = 1024, id_tag: str = ""
    ) -> None:
        self._path = Path(path)
        self._ids = IdGenerator()
        self._id_tag = id_tag
        """Appended to the user and group ids minted here (the region's tag; docs/regions.md)."""
        self._max_pending = max_pending
        self._pending = 0
        self._room = asyncio.Event()
        self._room.set()
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._health = Health(self._path)
        self._watcher: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._path.parent != Path():
            self._path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)
        except BaseException as exc:
            self._executor.shutdown(wait=True)
            self._executor = None
            if isinstance(exc, sqlite3.OperationalError):
                raise Unavailable(f"SQLite: {exc}") from exc
            raise
        self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="sqlite-health")

    def _connect(self) -> None:
        problem = check_files(self._path)
        if problem is not None:
            log.error("SQLite store %s cannot start: %s", self._path, problem)
            raise Unavailable(f"SQLite store {self._path} cannot start: {problem}")
        db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None, timeout=10)
        # Switching a new file to WAL and creating the schema can meet another process doing
        # the same (nodes started together on one new file): SQLite then says "locked" at once,
        # without waiting on the busy timeout. Retry for a bounded time.
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("PRAGMA busy_timeout=10000")
                db.execute("PRAGMA foreign_keys=ON")
                db.executescript(self._schema + HEALTH_SCHEMA)
                _add_columns(db, self._added_columns)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == CONNECT_ATTEMPTS - 1:
                    db.close()
                    raise
                time.sleep(0.05 * (attempt + 1))
        self._db = db
        self._health.record()

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                await asyncio.get_running_loop().run_in_executor(self._executor, self._shut)
            self._db = None
            self._health.release()
        self._executor.shutdown(wait=True)
        self._executor = None

    def _shut(self) -> None:
        """Close the connection on its thread; calls queued behind it find no connection."""
        db, self._db = self._db, None
        if db is not None:
            db.close()

    async def ping(self) -> bool:
        if self._health.reason is not None:
            return False
        try:
            return await self._run(lambda: self._conn().execute("SELECT 1").fetchone() == (1,))
        except Unavailable:
            return False

    def health(self) -> StoreHealth:
        health = self._health
        if self._db is None:
            return StoreHealth(False, "the SQLite store is not open", health.refused)
        return StoreHealth(health.reason is None, health.reason, health.refused)

    async def _watch(self) -> None:
        """Every second: are the files still ours? While unhealthy, probe for recovery."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            health = self._health
            if health.reason is None:
                moved = health.moved()
                if moved is not None:
                    health.fail(moved)
                continue
            executor = self._executor
            if health.lasting or executor is None:
                continue
            with contextlib.suppress(Exception):
                await loop.run_in_executor(executor, self._probe)

    def _probe(self) -> None:
        if self._db is not None:
            self._health.probe(self._db, now_ms())

    # -- what the aggregates use -----------------------------------------------------------

    def _guarded(self, fn: Callable[[], T], *, verify: bool = False) -> T:
        """Run ``fn`` on the store's thread under the health rules.

        Writes are refused while unhealthy (``PRAGMA query_only``); SQLite errors that say the
        file is broken make it unhealthy; a write that committed into files no longer at the
        path (``verify``, or any call that changed rows) is answered ``Unavailable``, never
        acknowledged.
        """
        db = self._conn()
        health = self._health
        try:
            health.apply(db)
            before = db.total_changes
            result = fn()
        except sqlite3.Error as exc:
            raise health.translate(exc) from exc
        if verify or db.total_changes != before:
            moved = health.moved()
            if moved is not None:
                health.fail(moved)
                raise health.refuse()
        return result

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise Unavailable("the SQLite store is not open")
        return self._db

    async def _enter(self) -> None:
        """Take one of ``max_pending`` places; past the bound, callers wait (backpressure)."""
        while self._pending >= self._max_pending:
            self._room.clear()
            await self._room.wait()
        self._pending += 1

    def _leave(self) -> None:
        self._pending -= 1
        self._room.set()

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise Unavailable("the SQLite store is not open")
        await self._enter()
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, self._guarded, fn
            )
        except sqlite3.OperationalError as exc:
            raise Unavailable(f"SQLite: {exc}") from exc
        finally:
            self._leave()

    def _group_commit(
        self, write: Callable[[list[I]], list[R | BaseException]]
    ) -> GroupCommit[I, R]:
        """A group commit whose batches ``write`` runs on the store's thread, under the health
        rules, as one verified call (:mod:`storage.sqlite.commit`)."""
        return GroupCommit(
            lambda items: submit(
                self._executor, lambda: self._guarded(lambda: write(items), verify=True)
            )
        )

    async def _queued(self, commit: GroupCommit[I, R], item: I) -> R:
        """Write ``item`` through a group commit, under the same bound and health rules as
        every other call."""
        if self._executor is None:
            raise Unavailable("the SQLite store is not open")
        if self._health.reason is not None:
            raise self._health.refuse()
        await self._enter()
        try:
            return await commit.write(item)
        finally:
            self._leave()


def _add_columns(db: sqlite3.Connection, columns: tuple[tuple[str, str, str], ...]) -> None:
    """Give a file made by an older version the columns added since (idempotent)."""
    for table, column, declaration in columns:
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column in present:
            continue
        try:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):  # another process added it just now
                raise
