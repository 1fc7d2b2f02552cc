"""Open-loop sending at a set rate, bounded in time."""

import asyncio
import time
from collections.abc import Callable

TICK_S = 0.002


class Pacer:
    """Calls send() `rate` times a second, whatever the server does, until stopped.

    Sends that fall due while the loop is late go out at the next tick, so the offered rate
    holds on average; the loop ends by itself at its deadline.
    """

    def __init__(self, send: Callable[[], None], limit_s: float) -> None:
        self.rate = 0.0
        self.sent = 0
        self._send = send
        self._limit_s = limit_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin sending in the background."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop sending and wait for the loop to end."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
            self._task = None

    async def _run(self) -> None:
        deadline = time.monotonic() + self._limit_s
        last = time.monotonic()
        credit = 0.0
        while last < deadline:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            credit += (now - last) * self.rate
            last = now
            due = int(credit)
            credit -= due
            for _ in range(due):
                self._send()
            self.sent += due
