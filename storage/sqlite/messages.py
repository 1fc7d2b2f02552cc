"""Messages and channels on SQLite: appends by group commit, history, recovery reads, heads.

Appends take SQLite's write lock (``BEGIN IMMEDIATE``), so offsets stay gap-free and unique
across the gateway processes sharing the file. Appends queued while the store's thread writes
one batch go together into the next transaction, in order (:mod:`storage.sqlite.commit`);
savepoints keep one bad append from costing the others theirs.
"""

from __future__ import annotations

import os
import sqlite3

from storage.base import AppendResult, ChannelPosition, Message
from storage.conversations import is_conversation
from storage.errors import NotFound
from storage.sqlite.base import SQLiteBase, chunks, immediate, now_ms
from storage.sqlite.commit import GroupCommit
from storage.sqlite.conversations import note_append

MESSAGE_SCHEMA = """
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
"""

_MESSAGE_COLUMNS = "id, channel, offset, sender, data, client_msg_id, ts"
_Row = tuple[str, str, int, str, bytes, str | None, int]
Append = tuple[str, str, bytes, str | None]
"""(channel, sender, data, client message id)."""


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


class SQLiteMessages(SQLiteBase):
    """:class:`storage.base.MessageStore` on SQLite."""

    def __init__(
        self, path: str | os.PathLike[str], *, max_pending: int = 1024, id_tag: str = ""
    ) -> None:
        super().__init__(path, max_pending=max_pending, id_tag=id_tag)
        self._appends: GroupCommit[Append, AppendResult] = self._group_commit(self._append_batch)

    # -- writing ---------------------------------------------------------------------------

    async def append(
        self, channel: str, sender: str, data: bytes, client_msg_id: str | None
    ) -> AppendResult:
        """Queue the append; queued appends are written together, in order, in one transaction
        (group commit, :mod:`storage.sqlite.commit`)."""
        return await self._queued(self._appends, (channel, sender, data, client_msg_id))

    def _append_batch(self, items: list[Append]) -> list[AppendResult | BaseException]:
        db = self._conn()
        results: list[AppendResult | BaseException] = []
        # Savepoints keep one bad append from costing the others theirs; alone, it needs none.
        isolate = len(items) > 1
        with immediate(db):
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
        ts = now_ms()
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
            note_append(db, channel, sender, message.offset, created=row is None, ts=ts)
        return AppendResult(message, epoch, duplicate=False)

    async def replicate(self, channel: str, epoch: str, messages: list[Message]) -> ChannelPosition:
        """:meth:`storage.base.MessageReplica.replicate`: one transaction per batch."""

        def run() -> ChannelPosition:
            db = self._conn()
            with immediate(db):
                row = db.execute(
                    "SELECT last_offset, epoch FROM channels WHERE name = ?", (channel,)
                ).fetchone()
                created = row is None
                if row is None:
                    last = 0
                    db.execute(
                        "INSERT INTO channels (name, last_offset, epoch) VALUES (?, 0, ?)",
                        (channel, epoch),
                    )
                elif row[1] != epoch:
                    last = 0
                    db.execute("DELETE FROM messages WHERE channel = ?", (channel,))
                    db.execute(
                        "UPDATE channels SET last_offset = 0, epoch = ? WHERE name = ?",
                        (epoch, channel),
                    )
                else:
                    last = row[0]
                for message in messages:
                    if message.offset <= last:
                        continue
                    if message.offset != last + 1:
                        break
                    db.execute(
                        f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            message.id,
                            channel,
                            message.offset,
                            message.sender,
                            message.data,
                            message.client_msg_id,
                            message.ts,
                        ),
                    )
                    if is_conversation(channel):
                        note_append(
                            db,
                            channel,
                            message.sender,
                            message.offset,
                            created=created and last == 0,
                            ts=message.ts,
                        )
                    last = message.offset
                db.execute("UPDATE channels SET last_offset = ? WHERE name = ?", (last, channel))
            return ChannelPosition(last, epoch)

        return await self._run(run)

    # -- reading ---------------------------------------------------------------------------

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
            for chunk in chunks(channels):
                marks = ", ".join("?" * len(chunk))
                for name, offset, epoch in db.execute(
                    f"SELECT name, last_offset, epoch FROM channels WHERE name IN ({marks})", chunk
                ):
                    found[name] = ChannelPosition(offset, epoch)
            return found

        return await self._run(run)
