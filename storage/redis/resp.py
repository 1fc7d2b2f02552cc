"""A small Redis (RESP2) connection for the fan-out path: pipelined commands and push messages.

Why not redis-py here: every PUBLISH from a publishing handler should share one connection and
go out without waiting for the previous reply (pipelining happens by itself: replies come back
in order and resolve futures first-in first-out), and the subscriber side wants push messages
handed over with no per-message bookkeeping. This module does exactly that and nothing else;
reconnecting is the broker's job.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis

Push = Callable[[list[Any]], None]


class RespError(Exception):
    """The server answered a command with an error reply."""


class ConnectionLost(ConnectionError):
    """The connection closed before the reply arrived."""


@dataclass(frozen=True, slots=True)
class RedisAddress:
    host: str
    port: int
    unix_path: str | None
    password: str | None
    username: str | None
    db: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        parts = urlsplit(url)
        if parts.scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("a Redis URL starts with redis://, rediss:// or unix://")
        db = 0
        path = parts.path.lstrip("/")
        if parts.scheme != "unix" and path:
            db = int(path)
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            unix_path=parts.path if parts.scheme == "unix" else None,
            password=unquote(parts.password) if parts.password else None,
            username=unquote(parts.username) if parts.username else None,
            db=db,
            tls=parts.scheme == "rediss",
        )


class RespConnection(asyncio.Protocol):
    """One Redis connection: ``command()`` pipelines; push messages go to ``on_push``."""

    def __init__(self, on_push: Push | None = None, max_inflight: int = 65536) -> None:
        self._reader = hiredis.Reader(replyError=RespError)
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._on_push = on_push
        self._transport: asyncio.Transport | None = None
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._room = asyncio.Event()
        self._room.set()
        self._max_inflight = max_inflight
        self._out: list[bytes] | None = None  # commands written this loop iteration
        self.subscribed = False
        """Once SUBSCRIBE was sent, every reply is a push: confirmations included (an error
        reply is handed over as ``[b"error", RespError]``)."""

    @classmethod
    async def open(
        cls, address: RedisAddress, *, timeout: float, on_push: Push | None = None
    ) -> RespConnection:
        loop = asyncio.get_running_loop()
        conn = cls(on_push)
        async with asyncio.timeout(timeout):
            if address.unix_path:
                await loop.create_unix_connection(lambda: conn, address.unix_path)
            else:
                context = ssl.create_default_context() if address.tls else None
                await loop.create_connection(lambda: conn, address.host, address.port, ssl=context)
            if address.password is not None:
                auth = (
                    [address.username, address.password] if address.username else [address.password]
                )
                await conn.command(b"AUTH", *auth)
            if address.db:
                await conn.command(b"SELECT", str(address.db))
        return conn

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but they implement it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        while (reply := reader.gets()) is not False:
            if self.subscribed:
                if self._on_push is not None:
                    # An error answer to a (S)SUBSCRIBE (a cluster's MOVED) comes as a push too.
                    self._on_push(reply if isinstance(reply, list) else [b"error", reply])
                continue
            if self._waiting:
                future = self._waiting.popleft()
                if len(self._waiting) < self._max_inflight:
                    self._room.set()
                if not future.done():
                    if isinstance(reply, RespError):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._out = None
        self._room.set()
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(ConnectionLost("the Redis connection closed"))
        if not self._lost.done():
            self._lost.set_result(None)

    # -- API -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._transport is None

    async def wait_closed(self) -> None:
        await asyncio.shield(self._lost)

    def send(self, *args: bytes | str) -> None:
        """Write a command without waiting for its reply (subscriber mode)."""
        if self._transport is None:
            raise ConnectionLost("the Redis connection is closed")
        self._write(hiredis.pack_command(args))  # type: ignore[arg-type]

    def _write(self, data: bytes) -> None:
        """Queue bytes for the socket; everything queued in one loop iteration goes in one write.

        Publishing handlers each send a command; coalescing them saves a system call per
        command under load and costs at most one loop iteration of latency.
        """
        out = self._out
        if out is None:
            self._out = [data]
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            out.append(data)

    def _flush(self) -> None:
        out, self._out = self._out, None
        if out and self._transport is not None:
            self._transport.writelines(out)

    def submit(self, *args: bytes | str) -> asyncio.Future[Any] | None:
        """Send a command now and return the future of its reply, without waiting.

        None when too many replies are already outstanding: the caller should ``await
        command()`` instead, which waits for room (backpressure).
        """
        if self._transport is None:
            raise ConnectionLost("the Redis connection is closed")
        if len(self._waiting) >= self._max_inflight:
            return None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._write(hiredis.pack_command(args))  # type: ignore[arg-type]
        return future

    async def command(self, *args: bytes | str) -> Any:
        """Send a command and wait for its reply; commands from many callers pipeline."""
        while len(self._waiting) >= self._max_inflight:  # bounded: wait for replies to drain
            self._room.clear()
            await self._room.wait()
        future = self.submit(*args)
        assert future is not None
        return await future

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
