"""The embedded default backend: one SQLite file in WAL mode.

All SQLite work runs on one dedicated thread that owns the connection, so the event loop never
blocks on disk. Calls waiting for that thread are bounded (``max_pending``); past the bound a
caller waits for a slot, which pushes back on the clients that cause the load. Several gateway
processes on one machine may share the file: writes take SQLite's write lock (``BEGIN
IMMEDIATE``), so offsets stay gap-free and unique across processes.

The store watches its own files and errors (``sqlite_health``): when it cannot keep writes it
says so in :meth:`SQLiteStore.health` and ``ping`` and refuses them with ``Unavailable``.
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
from typing import TypeVar

from storage import ids
from storage.base import (
    AppendResult,
    ChannelPosition,
    Conversation,
    Group,
    Message,
    ReadMark,
    RefreshState,
    RefreshUse,
    StoreHealth,
    User,
)
from storage.conversations import dm_users, group_channel, is_conversation, list_key
from storage.errors import Conflict, NotFound, Unavailable
from storage.ids import IdGenerator
from storage.sqlite_commit import GroupCommit
from storage.sqlite_follows import FOLLOW_SCHEMA, SQLiteFollows
from storage.sqlite_health import (
    CHECK_INTERVAL,
    HEALTH_SCHEMA,
    Health,
    check_files,
    submit,
)
from storage.sqlite_videos import VIDEO_SCHEMA, SQLiteVideos

T = TypeVar("T")
I = TypeVar("I")
R = TypeVar("R")
log = logging.getLogger("storage.sqlite")
CONNECT_ATTEMPTS = 20
"""Tries to open a file another process is initialising at the same moment (about 10 s)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS channels (
    name TEXT PRIMARY KEY,
    last_offset INTEGER NOT NULL,
    epoch TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    channel TEXT NOT NULL,
    offset INTEGER NOT NULL,
    id TEXT NOT NULL,
    sender TEXT NOT NULL,
    data BLOB NOT NULL,
    client_msg_id TEXT,
    ts INTEGER NOT NULL,
    PRIMARY KEY (channel, offset)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_id ON messages (channel, id);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_client_id
    ON messages (channel, sender, client_msg_id) WHERE client_msg_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    family_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE TABLE IF NOT EXISTS revoked_families (
    family_id TEXT PRIMARY KEY,
    revoked_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_members (
    group_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
-- One row per (user, DM or group channel): the read position, and list_key while the channel
-- is in the user's conversation list (NULL once they left a group).
CREATE TABLE IF NOT EXISTS conversations (
    user_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    last_read INTEGER NOT NULL DEFAULT 0,
    list_key TEXT,
    PRIMARY KEY (user_id, channel)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS conversations_by_list_key
    ON conversations (user_id, list_key) WHERE list_key IS NOT NULL;
"""

_IN_CHUNK = 500
"""Values per ``IN (...)`` list, well below SQLite's limit on bound parameters."""

_MESSAGE_COLUMNS = "id, channel, offset, sender, data, client_msg_id, ts"
_Row = tuple[str, str, int, str, bytes, str | None, int]


def _message(row: _Row) -> Message:
    return Message(
        id=row[0],
        channel=row[1],
        offset=row[2],
        sender=row[3],
        data=bytes(row[4]),
        client_msg_id=row[5],
        ts=row[6],
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


@contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    """Run the block as one write transaction, taken at once (``BEGIN IMMEDIATE``)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _chunks(values: list[str]) -> Iterator[list[str]]:
    unique = list(dict.fromkeys(values))
    for start in range(0, len(unique), _IN_CHUNK):
        yield unique[start : start + _IN_CHUNK]


def _note_append(
    db: sqlite3.Connection, channel: str, sender: str, offset: int, *, created: bool, ts: int
) -> None:
    """Keep conversation lists and the sender's read position in step with an append."""
    users = dm_users(channel)
    if created and users is not None:
        db.executemany(
            "INSERT INTO conversations (user_id, channel, last_read, list_key) VALUES (?, ?, 0, ?)"
            " ON CONFLICT (user_id, channel) DO UPDATE SET list_key = COALESCE(list_key,"
            " excluded.list_key)",
            [(user, channel, list_key(ts, channel)) for user in users],
        )
    db.execute(
        "INSERT INTO conversations (user_id, channel, last_read) VALUES (?, ?, ?)"
        " ON CONFLICT (user_id, channel) DO UPDATE SET last_read = MAX(last_read,"
        " excluded.last_read)",
        (sender, channel, offset),
    )


class SQLiteStore(SQLiteVideos, SQLiteFollows):
    """:class:`storage.base.Store` on one SQLite file."""

    def __init__(self, path: str | os.PathLike[str], *, max_pending: int = 1024) -> None:
        self._path = Path(path)
        self._ids = IdGenerator()
        self._max_pending = max_pending
        self._pending = 0
        self._room = asyncio.Event()
        self._room.set()
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._appends: GroupCommit[tuple[str, str, bytes, str | None], AppendResult] = GroupCommit(
            self._batch(self._append_batch)
        )
        self._health = Health(self._path)
        self._watcher: asyncio.Task[None] | None = None
        self._init_videos()

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
                db.executescript(SCHEMA + VIDEO_SCHEMA + FOLLOW_SCHEMA + HEALTH_SCHEMA)
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
            self._health.probe(self._db, _now_ms())

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

    # -- messages --------------------------------------------------------------------------

    async def append(
        self, channel: str, sender: str, data: bytes, client_msg_id: str | None
    ) -> AppendResult:
        """Queue the append; queued appends are written together, in order, in one transaction
        (group commit, :mod:`storage.sqlite_commit`)."""
        return await self._queued(self._appends, (channel, sender, data, client_msg_id))

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

    def _batch(
        self, write: Callable[[list[I]], list[R | BaseException]]
    ) -> Callable[[list[I]], asyncio.Future[list[R | BaseException]] | None]:
        """How a group commit hands a batch to the store's thread (None: the thread is gone)."""
        return lambda items: submit(
            self._executor, lambda: self._guarded(lambda: write(items), verify=True)
        )

    def _append_batch(
        self, items: list[tuple[str, str, bytes, str | None]]
    ) -> list[AppendResult | BaseException]:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        results: list[AppendResult | BaseException] = []
        # Savepoints keep one bad append from costing the others theirs; alone, it needs none.
        isolate = len(items) > 1
        try:
            for channel, sender, data, client_msg_id in items:
                if isolate:
                    db.execute("SAVEPOINT one")
                try:
                    results.append(self._append_one(db, channel, sender, data, client_msg_id))
                except sqlite3.OperationalError:
                    raise
                except sqlite3.Error as exc:
                    if not isolate:
                        raise
                    db.execute("ROLLBACK TO one")
                    results.append(exc)
                if isolate:
                    db.execute("RELEASE one")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return results

    def _append_one(
        self,
        db: sqlite3.Connection,
        channel: str,
        sender: str,
        data: bytes,
        client_msg_id: str | None,
    ) -> AppendResult:
        """Append inside the caller's transaction."""
        row = db.execute(
            "SELECT last_offset, epoch FROM channels WHERE name = ?", (channel,)
        ).fetchone()
        if row is None:
            last_offset, epoch = 0, self._ids.new()[-8:].lower()
            db.execute(
                "INSERT INTO channels (name, last_offset, epoch) VALUES (?, 0, ?)",
                (channel, epoch),
            )
        else:
            last_offset, epoch = row
        if client_msg_id is not None:
            found = db.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages"
                " WHERE channel = ? AND sender = ? AND client_msg_id = ?",
                (channel, sender, client_msg_id),
            ).fetchone()
            if found is not None:
                return AppendResult(_message(found), epoch, duplicate=True)
        ts = _now_ms()
        message = Message(
            id=self._ids.new(ts),
            channel=channel,
            offset=last_offset + 1,
            sender=sender,
            data=data,
            client_msg_id=client_msg_id,
            ts=ts,
        )
        db.execute(
            f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (message.id, channel, message.offset, sender, data, client_msg_id, ts),
        )
        db.execute("UPDATE channels SET last_offset = ? WHERE name = ?", (message.offset, channel))
        if is_conversation(channel):
            _note_append(db, channel, sender, message.offset, created=row is None, ts=ts)
        return AppendResult(message, epoch, duplicate=False)

    async def history(self, channel: str, *, limit: int, before: str | None) -> list[Message]:
        def run() -> list[Message]:
            db = self._conn()
            if before is None:
                rows = db.execute(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE channel = ?"
                    " ORDER BY offset DESC LIMIT ?",
                    (channel, limit),
                ).fetchall()
            else:
                anchor = db.execute(
                    "SELECT offset FROM messages WHERE channel = ? AND id = ?", (channel, before)
                ).fetchone()
                if anchor is None:
                    raise NotFound(f"no message {before} in {channel}")
                rows = db.execute(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE channel = ? AND offset < ?"
                    " ORDER BY offset DESC LIMIT ?",
                    (channel, anchor[0], limit),
                ).fetchall()
            return [_message(r) for r in rows]

        return await self._run(run)

    async def read_since(self, channel: str, offset: int, *, limit: int) -> list[Message]:
        def run() -> list[Message]:
            rows = (
                self._conn()
                .execute(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE channel = ? AND offset > ?"
                    " ORDER BY offset LIMIT ?",
                    (channel, offset, limit),
                )
                .fetchall()
            )
            return [_message(r) for r in rows]

        return await self._run(run)

    async def position(self, channel: str) -> ChannelPosition:
        def run() -> ChannelPosition:
            row = (
                self._conn()
                .execute("SELECT last_offset, epoch FROM channels WHERE name = ?", (channel,))
                .fetchone()
            )
            return ChannelPosition(0, "") if row is None else ChannelPosition(row[0], row[1])

        return await self._run(run)

    async def positions(self, channels: list[str]) -> dict[str, ChannelPosition]:
        def run() -> dict[str, ChannelPosition]:
            found = dict.fromkeys(channels, ChannelPosition(0, ""))
            db = self._conn()
            for chunk in _chunks(channels):
                marks = ", ".join("?" * len(chunk))
                for name, offset, epoch in db.execute(
                    f"SELECT name, last_offset, epoch FROM channels WHERE name IN ({marks})", chunk
                ):
                    found[name] = ChannelPosition(offset, epoch)
            return found

        return await self._run(run)

    # -- read positions and conversation lists ---------------------------------------------

    async def mark_read(self, user_id: str, channel: str, offset: int) -> ReadMark:
        def run() -> ReadMark:
            db = self._conn()
            with _immediate(db):
                head = db.execute(
                    "SELECT last_offset FROM channels WHERE name = ?", (channel,)
                ).fetchone()
                last_offset = 0 if head is None else int(head[0])
                target = min(offset, last_offset)
                row = db.execute(
                    "SELECT last_read FROM conversations WHERE user_id = ? AND channel = ?",
                    (user_id, channel),
                ).fetchone()
                current = 0 if row is None else int(row[0])
                if target <= current:
                    return ReadMark(current, last_offset, moved=False)
                db.execute(
                    "INSERT INTO conversations (user_id, channel, last_read) VALUES (?, ?, ?)"
                    " ON CONFLICT (user_id, channel) DO UPDATE SET last_read = excluded.last_read",
                    (user_id, channel, target),
                )
            return ReadMark(target, last_offset, moved=True)

        return await self._run(run)

    async def read_positions(self, user_id: str, channels: list[str]) -> dict[str, int]:
        def run() -> dict[str, int]:
            found = dict.fromkeys(channels, 0)
            db = self._conn()
            for chunk in _chunks(channels):
                marks = ", ".join("?" * len(chunk))
                for channel, last_read in db.execute(
                    "SELECT channel, last_read FROM conversations"
                    f" WHERE user_id = ? AND channel IN ({marks})",
                    (user_id, *chunk),
                ):
                    found[channel] = int(last_read)
            return found

        return await self._run(run)

    async def list_conversations(
        self, user_id: str, *, limit: int, before: str | None
    ) -> list[Conversation]:
        def run() -> list[Conversation]:
            if limit <= 0:
                return []
            below = "" if before is None else " AND c.list_key < ?"
            arguments = (user_id, limit) if before is None else (user_id, before, limit)
            rows = (
                self._conn()
                .execute(
                    "SELECT c.channel, c.last_read, c.list_key, h.last_offset, h.epoch, m.id,"
                    " g.name FROM conversations c"
                    " LEFT JOIN channels h ON h.name = c.channel"
                    " LEFT JOIN messages m ON m.channel = c.channel AND m.offset = h.last_offset"
                    " LEFT JOIN groups g ON g.id = CASE WHEN substr(c.channel, 1, 6) = 'group:'"
                    " THEN substr(c.channel, 7) END"
                    f" WHERE c.user_id = ? AND c.list_key IS NOT NULL{below}"
                    " ORDER BY c.list_key DESC LIMIT ?",
                    arguments,
                )
                .fetchall()
            )
            return [
                Conversation(
                    channel=channel,
                    last_offset=0 if offset is None else int(offset),
                    epoch=epoch or "",
                    last_ts=None if last_id is None else ids.timestamp_ms(last_id),
                    last_read=int(last_read),
                    name=name,
                    cursor=key,
                )
                for channel, last_read, key, offset, epoch, last_id, name in rows
            ]

        return await self._run(run)

    # -- accounts --------------------------------------------------------------------------

    async def create_user(self, username: str, password_hash: str) -> User:
        def run() -> User:
            # Ids are made on the store's thread only: IdGenerator is not thread-safe.
            user = User(self._ids.new(), username, password_hash, int(time.time()))
            try:
                self._conn().execute(
                    "INSERT INTO users (id, username, password_hash, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (user.id, user.username, user.password_hash, user.created_at),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"username {username!r} is taken") from exc
            return user

        return await self._run(run)

    async def get_user(self, user_id: str) -> User | None:
        return await self._user_where("id", user_id)

    async def get_user_by_username(self, username: str) -> User | None:
        return await self._user_where("username", username)

    async def _user_where(self, column: str, value: str) -> User | None:
        def run() -> User | None:
            row = (
                self._conn()
                .execute(
                    f"SELECT id, username, password_hash, created_at FROM users WHERE {column} = ?",
                    (value,),
                )
                .fetchone()
            )
            return None if row is None else User(*row)

        return await self._run(run)

    # -- refresh tokens --------------------------------------------------------------------

    async def add_refresh_token(
        self, token_hash: str, user_id: str, family_id: str, expires_at: int
    ) -> None:
        def run() -> None:
            try:
                self._conn().execute(
                    "INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at)"
                    " VALUES (?, ?, ?, ?)",
                    (token_hash, user_id, family_id, expires_at),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict("the refresh token already exists") from exc

        await self._run(run)

    async def use_refresh_token(self, token_hash: str, now: int) -> RefreshUse:
        def run() -> RefreshUse:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT user_id, family_id, expires_at, used FROM refresh_tokens"
                    " WHERE token_hash = ?",
                    (token_hash,),
                ).fetchone()
                if row is None:
                    result = RefreshUse(RefreshState.UNKNOWN)
                else:
                    user_id, family_id, expires_at, used = row
                    revoked = db.execute(
                        "SELECT 1 FROM revoked_families WHERE family_id = ?", (family_id,)
                    ).fetchone()
                    if used or revoked:
                        db.execute(
                            "INSERT OR IGNORE INTO revoked_families VALUES (?, ?)",
                            (family_id, now),
                        )
                        result = RefreshUse(RefreshState.REUSED, user_id, family_id)
                    elif expires_at <= now:
                        result = RefreshUse(RefreshState.EXPIRED, user_id, family_id)
                    else:
                        db.execute(
                            "UPDATE refresh_tokens SET used = 1 WHERE token_hash = ?",
                            (token_hash,),
                        )
                        result = RefreshUse(RefreshState.OK, user_id, family_id)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return result

        return await self._run(run)

    async def revoke_family(self, family_id: str) -> None:
        await self._run(
            lambda: self._conn().execute(
                "INSERT OR IGNORE INTO revoked_families VALUES (?, ?)",
                (family_id, int(time.time())),
            )
        )

    # -- groups ----------------------------------------------------------------------------

    async def create_group(self, name: str, owner: str, members: list[str]) -> Group:
        everyone = dict.fromkeys([owner, *members])

        def run() -> Group:
            now_ms = _now_ms()
            group = Group(self._ids.new(now_ms), name, owner, now_ms // 1000)
            channel = group_channel(group.id)
            key = list_key(now_ms, channel)
            db = self._conn()
            with _immediate(db):
                db.execute(
                    "INSERT INTO groups (id, name, owner, created_at) VALUES (?, ?, ?, ?)",
                    (group.id, group.name, group.owner, group.created_at),
                )
                db.executemany(
                    "INSERT INTO group_members (group_id, user_id, joined_at) VALUES (?, ?, ?)",
                    [(group.id, user, group.created_at) for user in everyone],
                )
                db.executemany(
                    "INSERT INTO conversations (user_id, channel, last_read, list_key)"
                    " VALUES (?, ?, 0, ?)"
                    " ON CONFLICT (user_id, channel) DO UPDATE SET list_key = excluded.list_key",
                    [(user, channel, key) for user in everyone],
                )
            return group

        return await self._run(run)

    async def get_group(self, group_id: str) -> Group | None:
        def run() -> Group | None:
            row = (
                self._conn()
                .execute("SELECT id, name, owner, created_at FROM groups WHERE id = ?", (group_id,))
                .fetchone()
            )
            return None if row is None else Group(*row)

        return await self._run(run)

    async def list_members(self, group_id: str, *, limit: int) -> list[str]:
        def run() -> list[str]:
            rows = (
                self._conn()
                .execute(
                    "SELECT user_id FROM group_members WHERE group_id = ?"
                    " ORDER BY joined_at, user_id LIMIT ?",
                    (group_id, limit),
                )
                .fetchall()
            )
            return [r[0] for r in rows]

        return await self._run(run)

    async def count_members(self, group_id: str) -> int:
        def run() -> int:
            row = (
                self._conn()
                .execute("SELECT COUNT(*) FROM group_members WHERE group_id = ?", (group_id,))
                .fetchone()
            )
            return int(row[0])

        return await self._run(run)

    async def is_member(self, group_id: str, user_id: str) -> bool:
        def run() -> bool:
            row = (
                self._conn()
                .execute(
                    "SELECT 1 FROM group_members WHERE group_id = ? AND user_id = ?",
                    (group_id, user_id),
                )
                .fetchone()
            )
            return row is not None

        return await self._run(run)

    async def add_member(self, group_id: str, user_id: str) -> bool:
        def run() -> bool:
            now_ms = _now_ms()
            channel = group_channel(group_id)
            db = self._conn()
            with _immediate(db):
                cursor = db.execute(
                    "INSERT OR IGNORE INTO group_members (group_id, user_id, joined_at)"
                    " VALUES (?, ?, ?)",
                    (group_id, user_id, now_ms // 1000),
                )
                if cursor.rowcount != 1:
                    return False
                # A new member starts with what is already in the channel read.
                db.execute(
                    "INSERT INTO conversations (user_id, channel, last_read, list_key)"
                    " VALUES (?, ?, COALESCE((SELECT last_offset FROM channels WHERE name = ?), 0),"
                    " ?) ON CONFLICT (user_id, channel) DO UPDATE SET"
                    " last_read = MAX(last_read, excluded.last_read), list_key = excluded.list_key",
                    (user_id, channel, channel, list_key(now_ms, channel)),
                )
            return True

        return await self._run(run)

    async def remove_member(self, group_id: str, user_id: str) -> bool:
        def run() -> bool:
            db = self._conn()
            with _immediate(db):
                cursor = db.execute(
                    "DELETE FROM group_members WHERE group_id = ? AND user_id = ?",
                    (group_id, user_id),
                )
                if cursor.rowcount != 1:
                    return False
                # The read position stays, for a member who comes back.
                db.execute(
                    "UPDATE conversations SET list_key = NULL WHERE user_id = ? AND channel = ?",
                    (user_id, group_channel(group_id)),
                )
            return True

        return await self._run(run)
