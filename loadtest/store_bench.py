"""Micro benchmark of the SQLite store's append path (run with the app's venv).

    .venv/bin/python loadtest/store_bench.py [--appends 4000]

Prints CPU microseconds per append and appends per second, for appends issued concurrently
(as many connections publishing at once do: group commit batches them) and one after another.
Pin it to one core (`taskset -c 0`) and compare runs made in the same session only.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import uvloop

from storage.sqlite import SQLiteStore

BODY = b'{"text":"hello there, this is a chat message of ordinary length"}'


async def measure(appends: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(Path(folder) / "bench.db")
        await store.open()
        try:
            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(
                *(store.append(f"room:r{i % 1000}", "u1", BODY, None) for i in range(appends))
            )
            report("concurrent", appends, cpu, wall)
            cpu, wall = time.process_time(), time.perf_counter()
            for i in range(appends):
                await store.append(f"room:r{i % 1000}", "u1", BODY, None)
            report("sequential", appends, cpu, wall)
        finally:
            await store.close()


def report(label: str, appends: int, cpu: float, wall: float) -> None:
    per = (time.process_time() - cpu) / appends * 1e6
    rate = appends / (time.perf_counter() - wall)
    print(f"{label:>10}: {per:6.1f} µs CPU per append, {rate:8.0f} appends/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=4000)
    uvloop.run(measure(parser.parse_args().appends))


if __name__ == "__main__":
    main()
