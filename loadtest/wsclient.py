"""The WebSocket client the optional locust users share (``social.py``, ``viral.py``).

Runs in the load test's own venv (gevent, websocket-client); nothing from the app is imported.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable
from typing import Any

import gevent
import websocket
from gevent.event import AsyncResult

PASSWORD = "loadtest password"
REPLY_TIMEOUT = 10.0


class LoadError(Exception):
    """A request of the load test failed; reported to locust as the request's exception."""


class Socket:
    """One user's WebSocket with a reader greenlet: replies by id, pushes to a callback."""

    def __init__(self, base: str, token: str, on_push: Callable[[dict[str, Any]], None]) -> None:
        url = "ws" + base.removeprefix("http") + "/ws?token=" + token
        self.ws = websocket.create_connection(
            url, timeout=REPLY_TIMEOUT, skip_utf8_validation=True, suppress_origin=True
        )
        self.ws.settimeout(None)
        self.ids = itertools.count(1)
        self.waiting: dict[int, AsyncResult] = {}
        self.on_push = on_push
        self.reader = gevent.spawn(self._read)

    def _read(self) -> None:
        try:
            while True:
                message = json.loads(self.ws.recv())
                waiter = self.waiting.pop(message.get("id") or -1, None)
                if message.get("op") in ("reply", "error") and waiter is not None:
                    waiter.set(message)
                else:
                    self.on_push(message)
        except (websocket.WebSocketException, OSError, ValueError) as exc:
            for waiter in self.waiting.values():
                waiter.set_exception(LoadError(repr(exc)))

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        request_id = next(self.ids)
        waiter = AsyncResult()
        self.waiting[request_id] = waiter
        self.ws.send(json.dumps({"op": op, "id": request_id, **fields}))
        answer: dict[str, Any] = waiter.get(timeout=REPLY_TIMEOUT)
        return answer

    def close(self) -> None:
        self.reader.kill(block=False)
        with contextlib.suppress(websocket.WebSocketException, OSError):
            self.ws.close()
