"""Whether the SQLite store may be trusted with writes (the health of the SQLite store).

SQLite keeps writing through its open descriptors when the file's folder is deleted or the file
replaced, and answers every commit with success: the data goes to a file nobody will open
again. So the store checks what SQLite cannot see:

- at start, that the folder takes new files and that the database, ``-wal`` and ``-shm`` files
  that exist are regular files this process can open for writing. SQLite maps ``-shm``; one it
  may only read is mapped read-only and the first write kills the process with SIGBUS, so the
  store refuses to start instead (:func:`check_files`);
- after every write, and every second, that the three files at their paths are still the ones
  it opened (device and inode, :meth:`Health.moved`);
- every SQLite error: I/O errors, a full disk, a read-only or unopenable file, corruption
  (:meth:`Health.translate`).

Any of these makes the store unhealthy: one ERROR in the log, ``/readyz`` 503, and writes
refused with :class:`storage.errors.Unavailable` (``PRAGMA query_only`` on the connection, so
no write can slip through) until a probe write succeeds on the files at their paths, once a
second; then one INFO. Corruption is never recovered from: it needs a restart (and a repair).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sqlite3
import stat
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from storage.errors import Unavailable

log = logging.getLogger("storage.sqlite")
T = TypeVar("T")

HEALTH_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_health (
    id INTEGER PRIMARY KEY,
    checked_at INTEGER NOT NULL
);
"""
"""One row the recovery probe rewrites: a real write, through the WAL, of one small page."""

CHECK_INTERVAL = 1.0
"""Seconds between checks of the files (and probes while unhealthy)."""

_READONLY = 8
_IOERR = 10
_CORRUPT = 11
_FULL = 13
_CANTOPEN = 14
_PROTOCOL = 15
_NOTADB = 26
_BROKEN = frozenset({_READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _PROTOCOL, _NOTADB})
"""Primary result codes that say the file cannot keep writes (busy and locked are contention)."""
_LASTING = frozenset({_CORRUPT, _NOTADB})
"""Of those, the ones a successful probe write does not cure."""

_open_files: dict[tuple[int, int], int] = {}
"""(device, inode) of database files open in this process -> stores holding them."""
_open_lock = threading.Lock()


def companions(path: Path) -> tuple[Path, Path, Path]:
    """The database file and the ``-wal`` and ``-shm`` files SQLite keeps beside it."""
    return path, Path(f"{path}-wal"), Path(f"{path}-shm")


def _identity(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def submit(executor: ThreadPoolExecutor | None, fn: Callable[[], T]) -> asyncio.Future[T] | None:
    """Run ``fn`` on the store's thread; None when that thread is gone (the store closed)."""
    if executor is None:
        return None
    try:
        return asyncio.get_running_loop().run_in_executor(executor, fn)
    except RuntimeError:  # cannot schedule new futures after shutdown
        return None


def fail_waiters(futures: list[asyncio.Future[Any]]) -> None:
    """Group-commit waiters of a batch that cannot be written: failed, never left hanging."""
    for future in futures:
        if not future.done():
            future.set_exception(Unavailable("the SQLite store is not open"))


def check_files(path: Path) -> str | None:
    """Why SQLite could not write every file it will use at ``path``; None when it can.

    Opening a file and closing it again drops every POSIX lock this process holds on it, SQLite's
    included, so files of a database already open in this process (another store on the same
    path) are not opened again: that store checked them.
    """
    folder = path.parent
    if not folder.is_dir():
        return f"{folder} is not a folder"
    probe = folder / f".{path.name}.probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.unlink(probe)
    except OSError as exc:
        return f"cannot create files in {folder}: {exc}"
    try:
        held = _identity(path) in _open_files
    except FileNotFoundError:
        held = False
    for file in companions(path):
        try:
            mode = os.stat(file).st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(mode):
            return f"{file} is not a regular file"
        if held:
            continue
        try:
            os.close(os.open(file, os.O_RDWR))
        except OSError as exc:
            return (
                f"{file} cannot be opened for writing ({exc}); SQLite would map it read-only"
                " and fail (or crash with SIGBUS) on the first write"
            )
    return None


class Health:
    """The store's health: read from any thread, changed under a lock, logged on transitions."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._ids: dict[Path, tuple[int, int]] = {}
        self._held: tuple[int, int] | None = None
        self.reason: str | None = None
        """Why the store is unhealthy; None while healthy."""
        self.lasting = False
        """True when no probe can cure it (corruption): a restart is needed."""
        self.refused = 0
        """Writes refused (or not acknowledged) because the store was unhealthy."""
        self.readonly = False
        """Whether ``PRAGMA query_only`` is on (the store's thread only)."""

    # -- the files -------------------------------------------------------------------------

    def record(self) -> None:
        """Remember which files the new connection uses (on the store's thread, after open)."""
        self.release()
        with self._lock:
            self.reason = None
            self.lasting = False
        self.readonly = False  # a new connection starts with query_only off
        self._ids = {}
        for file in companions(self._path):
            try:
                self._ids[file] = _identity(file)
            except FileNotFoundError:
                continue
        held = self._ids.get(self._path)
        if held is not None:
            with _open_lock:
                _open_files[held] = _open_files.get(held, 0) + 1
            self._held = held

    def release(self) -> None:
        """Forget the files (the connection is closed)."""
        held, self._held = self._held, None
        if held is None:
            return
        with _open_lock:
            left = _open_files.get(held, 0) - 1
            if left > 0:
                _open_files[held] = left
            else:
                _open_files.pop(held, None)

    def moved(self) -> str | None:
        """Why the files at the paths are not the ones the connection writes, or None."""
        for file, identity in self._ids.items():
            try:
                now = _identity(file)
            except FileNotFoundError:
                return f"{file} is gone (deleted, or its folder removed)"
            except OSError as exc:
                return f"{file} cannot be checked: {exc}"
            if now != identity:
                return f"{file} was replaced by another file"
        return None

    # -- transitions -----------------------------------------------------------------------

    def fail(self, reason: str, *, lasting: bool = False) -> None:
        with self._lock:
            if lasting:
                self.lasting = True
            if self.reason is not None:
                return
            self.reason = reason
        log.error("SQLite store %s is unhealthy, refusing writes: %s", self._path, reason)

    def recovered(self) -> None:
        with self._lock:
            if self.reason is None or self.lasting:
                return
            reason, self.reason = self.reason, None
        log.info("SQLite store %s is healthy again (was: %s)", self._path, reason)

    def refuse(self) -> Unavailable:
        """Count a refused write and return the error to raise."""
        with self._lock:
            self.refused += 1
        return Unavailable(f"the SQLite store is unhealthy: {self.reason}")

    def translate(self, exc: sqlite3.Error) -> Exception:
        """The error to raise for ``exc``; a broken file makes the store unhealthy first."""
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        if code not in _BROKEN:
            if isinstance(exc, sqlite3.OperationalError):
                return Unavailable(f"SQLite: {exc}")
            return exc
        if code == _READONLY and self.readonly:
            return self.refuse()  # query_only at work: refused, not a new failure
        name = getattr(exc, "sqlite_errorname", "")
        self.fail(f"SQLite said {exc} ({name})", lasting=code in _LASTING)
        return self.refuse()

    # -- on the store's thread -------------------------------------------------------------

    def apply(self, db: sqlite3.Connection) -> None:
        """Keep ``PRAGMA query_only`` in step with the health (before each call, no transaction)."""
        wanted = self.reason is not None
        if wanted != self.readonly:
            db.execute(f"PRAGMA query_only={int(wanted)}")
            self.readonly = wanted

    def probe(self, db: sqlite3.Connection, now: int) -> None:
        """While unhealthy: write one row; healthy again if it commits into the files we hold."""
        if self.reason is None or self.lasting or self.moved() is not None:
            return
        try:
            if self.readonly:
                db.execute("PRAGMA query_only=0")
                self.readonly = False
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT INTO store_health (id, checked_at) VALUES (1, ?)"
                    " ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
                    (now,),
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            log.debug("SQLite store %s: probe write failed: %s", self._path, exc)
            return
        finally:
            self.apply(db)
        if self.moved() is None:
            self.recovered()
            self.apply(db)
