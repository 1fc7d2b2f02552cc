"""Group commit: writes of one kind queued on the event loop, written on the store's thread in batches.

While the store's thread writes one batch, new writes queue up and go into the next, so under
load one thread hop and one commit serve many writes (appends, likes). Every waiter is answered:
a batch that cannot be handed over (the store closed, its thread gone) or that was cancelled
fails its waiters with :class:`~storage.errors.Unavailable`; a batch that failed as a whole
fails each of its waiters with that error (``sqlite3.OperationalError`` as ``Unavailable``); an
item whose own outcome is an exception fails only its waiter.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Generic, TypeVar

from storage.errors import Unavailable
from storage.sqlite.health import fail_waiters

I = TypeVar("I")
R = TypeVar("R")


class GroupCommit(Generic[I, R]):
    """One queue of writes. ``submit`` runs a batch on the store's thread (None: it cannot)."""

    def __init__(
        self, submit: Callable[[list[I]], asyncio.Future[list[R | BaseException]] | None]
    ) -> None:
        self._submit = submit
        self._queue: list[tuple[I, asyncio.Future[R]]] = []
        self._writing = False

    async def write(self, item: I) -> R:
        """Queue ``item``; its outcome once the batch it went into committed (or failed)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if not self._writing:
            self._flush()
        return await future

    def _flush(self) -> None:
        """Hand every queued item to the store's thread as one batch (on the event loop)."""
        batch, self._queue = self._queue, []
        if not batch:
            return
        done = self._submit([item for item, _ in batch])
        if done is None:
            fail_waiters([future for _item, future in batch])
            return
        self._writing = True

        def finished(results: asyncio.Future[list[R | BaseException]]) -> None:
            self._writing = False
            error: BaseException | None = (
                Unavailable("the SQLite store is not open")
                if results.cancelled()
                else results.exception()
            )
            if isinstance(error, sqlite3.OperationalError):
                error = Unavailable(f"SQLite: {error}")
            for index, (_item, future) in enumerate(batch):
                if future.done():
                    continue
                if error is not None:
                    future.set_exception(error)
                    continue
                outcome = results.result()[index]
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
            self._flush()

        done.add_done_callback(finished)
