"""The default push sink: one JSON line per device send, in ``MOOSIC_PUSH_DIR``.

Each process appends to a file of its own (``{host}-{pid}.jsonl``), one ``write`` per line, so
several processes sharing the folder never interleave inside a line. A line holds the time,
the device (id, platform; never its token) and the notification as a provider would get it:

``{"ts": 1767225600000, "user_id": ..., "device_id": ..., "platform": "apns", "kind":
"message", "conversation": ..., "count": 3, "sender": ..., "sender_name": ..., "title": ...,
"body": ..., "last_offset": 12}``

Nothing is ever refused here: every send is ``SENT``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from pathlib import Path
from typing import IO

import orjson

from gateway.push.sink import Delivery, Push, Verdict
from storage.push import Device


class JsonLines:
    """:class:`gateway.push.sink.PushSink` writing JSON lines to a folder."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / f"{socket.gethostname()}-{os.getpid()}.jsonl"
        self._file: IO[bytes] | None = None
        self._lock = threading.Lock()

    async def open(self) -> None:
        return None  # the folder and the file are made with the first line

    async def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            await asyncio.to_thread(file.close)

    def _write(self, line: bytes) -> None:
        with self._lock:
            if self._file is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open
            self._file.write(line)

    async def send(self, device: Device, push: Push) -> Delivery:
        line = orjson.dumps(
            {
                "ts": int(time.time() * 1000),
                "user_id": device.user_id,
                "device_id": device.id,
                "platform": device.platform,
                "kind": push.kind,
                "conversation": push.conversation,
                "count": push.count,
                "sender": push.sender,
                "sender_name": push.sender_name,
                "title": push.title,
                "body": push.body,
                "last_offset": push.last_offset,
            }
        )
        try:
            await asyncio.to_thread(self._write, line + b"\n")
        except OSError as exc:
            return Delivery(Verdict.FAILED, detail=f"{type(exc).__name__}: {exc.strerror}")
        return Delivery(Verdict.SENT)
