"""The default mail sink: each message as one ``.eml`` file in a folder (``MOOSIC_MAIL_DIR``).

A file is written under a temporary name and renamed into place, so a reader of the folder
never sees half a message. Names sort by time: ``{ms}-{kind}-{random}.eml``. The folder is
made with the first message (a node that sends none leaves no folder behind).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from email.message import EmailMessage
from pathlib import Path

from gateway.mail.message import to_bytes
from gateway.mail.outbox import MailError


class EmlFiles:
    """:class:`gateway.mail.outbox.MailSink` writing ``.eml`` files."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def deliver(self, message: EmailMessage, kind: str) -> None:
        data = to_bytes(message)
        name = f"{int(time.time() * 1000):013d}-{kind}-{secrets.token_hex(4)}.eml"
        try:
            await asyncio.to_thread(self._write, name, data)
        except OSError as exc:
            raise MailError(f"cannot write {name}: {exc}") from exc

    def _write(self, name: str, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / name
        partial = self.folder / f".{name}.part"
        with open(partial, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, final)
