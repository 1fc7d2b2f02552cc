"""Group commit (storage.sqlite.commit): batches in order, and every waiter answered.

The store-level version (appends and likes waiting while the store closes) is in
test_sqlite_health.py; these drive the queue itself on a real one-thread executor, so the
cases a close races into (the thread already gone, a batch cancelled) happen every time.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from storage.errors import Unavailable
from storage.sqlite.commit import GroupCommit
from storage.sqlite.health import submit

WAIT = 30.0
"""Generous: a waiter left hanging fails the test by timing out, not by being slow."""


def on_thread(
    executor: ThreadPoolExecutor | None, write: Callable[[list[int]], list[int | BaseException]]
) -> Callable[[list[int]], asyncio.Future[list[int | BaseException]] | None]:
    return lambda items: submit(executor, lambda: write(items))


async def test_writes_queued_during_a_batch_go_together_into_the_next_in_order() -> None:
    batches: list[list[int]] = []

    def write(items: list[int]) -> list[int | BaseException]:
        batches.append(items)
        return [i * 10 for i in items]

    with ThreadPoolExecutor(max_workers=1) as executor:
        commit: GroupCommit[int, int] = GroupCommit(on_thread(executor, write))
        results = await asyncio.wait_for(asyncio.gather(*(commit.write(n) for n in range(5))), WAIT)
    assert results == [0, 10, 20, 30, 40]
    assert batches == [[0], [1, 2, 3, 4]]


async def test_waiters_are_failed_when_the_thread_is_gone() -> None:
    executor = ThreadPoolExecutor(max_workers=1)
    executor.shutdown(wait=True)
    commit: GroupCommit[int, int] = GroupCommit(on_thread(executor, lambda items: list(items)))
    with pytest.raises(Unavailable):
        await asyncio.wait_for(commit.write(1), WAIT)
    gone: GroupCommit[int, int] = GroupCommit(on_thread(None, lambda items: list(items)))
    with pytest.raises(Unavailable):
        await asyncio.wait_for(gone.write(1), WAIT)


async def test_the_batch_behind_a_closing_store_fails_its_waiters() -> None:
    """The first batch is written; the thread goes while the second waits for it."""
    executor: ThreadPoolExecutor | None = ThreadPoolExecutor(max_workers=1)
    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    def write(items: list[int]) -> list[int | BaseException]:
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(WAIT)
        return list(items)

    commit: GroupCommit[int, int] = GroupCommit(
        lambda items: submit(executor, lambda: write(items))
    )
    first = asyncio.ensure_future(commit.write(1))
    await asyncio.sleep(0)
    queued = [asyncio.ensure_future(commit.write(n)) for n in (2, 3)]
    await asyncio.sleep(0)
    closing, executor = executor, None  # as SQLiteStore.close: the next batch finds no thread
    release.set()
    assert await asyncio.wait_for(first, WAIT) == 1
    done, pending = await asyncio.wait(queued, timeout=WAIT)
    assert not pending, "waiters left hanging"
    assert all(isinstance(f.exception(), Unavailable) for f in done)
    assert closing is not None
    closing.shutdown(wait=True)


async def test_a_failed_batch_fails_each_waiter_and_an_item_error_only_its_own() -> None:
    def write(items: list[int]) -> list[int | BaseException]:
        if 0 in items:
            raise sqlite3.OperationalError("database is locked")
        return [ValueError(f"bad {i}") if i % 2 else i for i in items]

    with ThreadPoolExecutor(max_workers=1) as executor:
        commit: GroupCommit[int, int] = GroupCommit(on_thread(executor, write))
        with pytest.raises(Unavailable, match="database is locked"):
            await asyncio.wait_for(commit.write(0), WAIT)
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(commit.write(n) for n in (2, 3, 4)), return_exceptions=True), WAIT
        )
    assert outcomes[0] == 2
    assert outcomes[2] == 4
    assert isinstance(outcomes[1], ValueError)
    assert str(outcomes[1]) == "bad 3"


async def test_a_cancelled_batch_answers_unavailable() -> None:
    future: asyncio.Future[list[int | BaseException]] = asyncio.get_running_loop().create_future()
    commit: GroupCommit[int, int] = GroupCommit(lambda items: future)
    waiter = asyncio.ensure_future(commit.write(1))
    await asyncio.sleep(0)
    future.cancel()
    with pytest.raises(Unavailable):
        await asyncio.wait_for(waiter, WAIT)
