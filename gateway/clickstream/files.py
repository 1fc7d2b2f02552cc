"""JSON-lines files, one event per line, rotated by size and by age.

Files are named ``{prefix}-{node}-{YYYYmmddTHHMMSSZ}-{seq}.jsonl`` in the folder
(``MOOSIC_CLICKSTREAM_DIR``): the sequence number orders the files of one node run, and a file
is never reopened. A new file starts before a line that would take the current one past
``max_bytes`` (a single longer line gets a file of its own) and before the first line written
``max_seconds`` or more after the current file was opened. Every write ends with a flush to the
operating system, each rotation and the close with an ``fsync``. Writes run in a worker thread,
so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from itertools import accumulate
from pathlib import Path
from typing import BinaryIO

from gateway.metrics import Metrics
from handlers.events import Record


def safe_name(text: str) -> str:
    """``text`` with anything but letters, digits, ``_``, ``.`` and ``-`` made ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text) or "_"


class JsonLines:
    """A rotating JSON-lines writer (blocking: call it from a worker thread)."""

    def __init__(
        self,
        folder: Path,
        prefix: str,
        *,
        max_bytes: int,
        max_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.folder = folder
        self.prefix = safe_name(prefix)
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self._clock = clock
        self._file: BinaryIO | None = None
        self._size = 0
        self._opened = 0.0
        self._seq = 0
        self.files: list[Path] = []
        """Every file this writer opened, oldest first."""

    def _due(self, line: bytes) -> bool:
        if self._file is None:
            return True
        if self._size == 0:
            return False
        return (
            self._size + len(line) > self.max_bytes
            or self._clock() - self._opened >= self.max_seconds
        )

    def _rotate(self) -> None:
        self._finish()
        self.folder.mkdir(parents=True, exist_ok=True)
        now = self._clock()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        while True:
            self._seq += 1
            path = self.folder / f"{self.prefix}-{stamp}-{self._seq:06d}.jsonl"
            try:
                self._file = path.open("xb")  # never append to someone else's file
            except FileExistsError:
                continue
            break
        self.files.append(path)
        self._size = 0
        self._opened = now

    def _finish(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def write(self, lines: Sequence[bytes]) -> None:
        # Whole runs of lines go in one write each: a loop of Python per line would hold the
        # GIL for the batch (milliseconds for a few thousand lines), and the event loop, which
        # takes the GIL back after each of its system calls, would wait for it every time.
        start, count = 0, len(lines)
        while start < count:
            if self._due(lines[start]):
                self._rotate()
            assert self._file is not None
            room = self.max_bytes - self._size
            sizes = list(accumulate(map(len, lines[start:])))
            end = start + max(1, bisect_right(sizes, room))  # the first line always goes in
            self._file.write(b"".join(lines[start:end]))
            self._size += sizes[end - start - 1]
            start = end
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        self._finish()


class FileSink:
    """The default sink: every record as a line of the rotating files (``JsonLines``)."""

    def __init__(self, writer: JsonLines, metrics: Metrics) -> None:
        self.writer = writer
        self._metrics = metrics
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        await asyncio.to_thread(self.writer.folder.mkdir, parents=True, exist_ok=True)

    async def write(self, records: Sequence[Record]) -> None:
        await self.write_lines([record.data for record in records])
        self._metrics.clickstream_events_written += len(records)

    async def write_lines(self, lines: Sequence[bytes]) -> None:
        async with self._lock:
            await asyncio.to_thread(self.writer.write, lines)

    async def close(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self.writer.close)
