"""The HTTP server under the app: what a connection may hold before it signs in (issue 21, 4).

aiohttp's own server waits for a request body as long as it trickles in, keeps idle
connections for 75 s, answers unparsable requests in plain text that echoes the input, and has
no notion of who holds its descriptors. Here, around aiohttp 3.14's ``RequestHandler`` and
``Server`` (pinned; the parts reached into are named below):

- **Headers** must arrive within ``MOOSIC_HTTP_KEEPALIVE_TIMEOUT`` of the connection opening or
  of the previous answer; a connection with a half-sent request then gets ``408
  request_timeout`` and is closed, an idle one is closed.
- **Bodies** (:func:`http_limits`): a body still arriving ``MOOSIC_HTTP_BODY_TIMEOUT`` seconds
  after its headers must have averaged ``MOOSIC_HTTP_BODY_MIN_RATE`` bytes a second since
  then, checked again whenever it would fall behind; one that does not gets ``408
  request_timeout`` and the connection is closed. A ``Content-Length`` over the route's limit
  is refused with ``413 request_too_large`` before a byte of the body is read.
- **Unparsable requests** get ``400 bad_request`` in JSON, with the security headers; neither
  the answer nor the log carries any of the input (a header line can hold a token).
- **Unauthenticated connections** (:class:`ConnectionGuard`): a connection counts as
  unauthenticated until one of its requests carries a valid access token (or it becomes a
  WebSocket, which needs one). One address may hold ``MOOSIC_HTTP_MAX_UNAUTHENTICATED_PER_ADDRESS``
  of them; more are answered ``429 too_many_connections`` at once and closed. Trusted proxies
  are exempt (behind them, each address is many clients). When the process's open descriptors
  reach ``RLIMIT_NOFILE`` minus ``MOOSIC_FD_RESERVE``, each new connection closes the oldest
  unauthenticated one (idle ones first), so ``accept()`` never fails with ``EMFILE`` and probes
  (``/healthz``, ``/readyz``, ``/metrics``) and signed-in clients still get through.
- **A client that leaves mid-body** counts in ``moosic_http_client_disconnects_total`` and is
  logged at INFO, without a stack; it is not an ``internal_error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import resource
from collections import OrderedDict
from http import HTTPStatus
from typing import Any, cast

import orjson
from aiohttp import ClientPayloadError, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.streams import StreamReader
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from aiohttp.web_runner import GracefulExit
from aiohttp.web_server import Server

from gateway.guard.edge import IDENTITY
from gateway.guard.geo import in_networks
from gateway.http.errors import error_response, json_response
from gateway.http.security import SECURITY_HEADERS
from gateway.keys import METRICS, SETTINGS
from gateway.metrics import Metrics
from gateway.settings import IPNetwork, Settings
from handlers.errors import (
    BAD_REQUEST,
    INTERNAL_ERROR,
    REQUEST_TIMEOUT,
    REQUEST_TOO_LARGE,
    SERVER_BUSY,
    TOO_MANY_CONNECTIONS,
    ErrorKind,
    OpError,
)
from handlers.events import MAX_BODY_BYTES as EVENTS_MAX_BODY_BYTES

log = logging.getLogger(__name__)

UPLOAD_PATH = "/v1/media/uploads/local"
"""Its body is a video: it checks its own, larger size limit (gateway/http/media.py)."""
EVENTS_PATH = "/v1/events"
"""Clickstream batches: up to 1 MiB, above the REST limit (gateway/http/rest.py)."""
BROADCAST_PATH = "/server/v1/broadcast"
"""The server API's broadcast: up to 1,000 channel names, above the REST limit
(gateway/http/server_api.py)."""
BROADCAST_MAX_BODY_BYTES = 512 * 1024
_BODY_LIMITS: dict[str, int | None] = {
    UPLOAD_PATH: None,
    EVENTS_PATH: EVENTS_MAX_BODY_BYTES,
    BROADCAST_PATH: BROADCAST_MAX_BODY_BYTES,
}
"""Paths whose bodies have their own limit (None: checked by the route itself)."""
REFUSED_LINGER = 1.0
"""Seconds a refused connection stays open after its answer (so the answer is read, not reset)."""
WARN_EVERY = 10.0
"""Seconds between two warnings about refused or shed connections."""


class BodyTimeoutError(OpError):
    """Set on a request's payload when its body is too slow: the reading handler raises it."""

    def __init__(self, message: str) -> None:
        super().__init__(REQUEST_TIMEOUT, message)


def raw_answer(kind: ErrorKind, message: str) -> bytes:
    """A whole HTTP/1.1 error answer, for when no request object exists (or none yet)."""
    body = orjson.dumps(OpError(kind, message).to_dict())
    head = [
        f"HTTP/1.1 {kind.status} {HTTPStatus(kind.status).phrase}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in SECURITY_HEADERS.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


# -- descriptors and unauthenticated connections ----------------------------------------------


class ConnectionGuard:
    """Counts unauthenticated connections per address and keeps descriptors in reserve."""

    def __init__(
        self,
        *,
        max_per_address: int,
        fd_reserve: int,
        trusted: tuple[IPNetwork, ...],
        metrics: Metrics,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.max_per_address = max_per_address
        self.fd_reserve = fd_reserve
        self._trusted = trusted
        self.metrics = metrics
        self._loop = loop
        self._unauthenticated: OrderedDict[GatewayRequestHandler, str] = OrderedDict()
        """Oldest first."""
        self._per_address: dict[str, int] = {}
        self._fd_sample = 0
        self._fd_sampled_at = -1e9
        self._since_sample = 0
        self._warned_at = -1e9
        self._proc_fd = os.path.isdir("/proc/self/fd")
        self._threshold = self._fd_threshold()
        """Read once: the process's descriptor limit does not change while it serves."""

    @property
    def unauthenticated(self) -> int:
        return len(self._unauthenticated)

    @property
    def open_fds(self) -> int:
        return self._fd_sample + self._since_sample

    def _fd_threshold(self) -> int | None:
        """Descriptors open at which connections are shed or refused (None: no line)."""
        if self.fd_reserve <= 0 or not self._proc_fd:
            return None
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return None
        return max(1, soft - self.fd_reserve)

    def _fds(self, threshold: int) -> int:
        """Open descriptors: sampled from /proc at most every 0.5 s unless close to the line."""
        now = self._loop.time()
        estimate = self._fd_sample + self._since_sample
        if now - self._fd_sampled_at > 0.5 or estimate >= threshold - 8:
            with contextlib.suppress(OSError):
                self._fd_sample = len(os.listdir("/proc/self/fd")) - 1  # listdir's own
                self._since_sample = 0
                self._fd_sampled_at = now
        return self._fd_sample + self._since_sample

    def admit(self, handler: GatewayRequestHandler, host: str) -> ErrorKind | None:
        """Track a new connection; the refusal to answer it with, or None to serve it."""
        if (
            self.max_per_address > 0
            and self._per_address.get(host, 0) >= self.max_per_address
            and not in_networks(host, self._trusted)
        ):
            self.metrics.http_connections_refused += 1
            self._warn(
                "refusing connections from %s: %d open without signing in",
                host,
                self.max_per_address,
            )
            return TOO_MANY_CONNECTIONS
        threshold = self._threshold
        if threshold is not None:
            fds = self._fds(threshold)
            if fds >= threshold and not self._shed(fds - threshold + 1):
                self.metrics.http_connections_refused += 1
                self._warn("refusing a connection: %d descriptors open (line %d)", fds, threshold)
                return SERVER_BUSY
            self._since_sample += 1
        self._unauthenticated[handler] = host
        self._per_address[host] = self._per_address.get(host, 0) + 1
        return None

    def _shed(self, count: int) -> bool:
        """Close ``count`` unauthenticated connections, idle ones first, oldest first."""
        idle = [h for h in self._unauthenticated if not h.busy]
        victims = (idle + [h for h in self._unauthenticated if h.busy])[:count]
        for victim in victims:
            self.release(victim)
            victim.force_close()
        self._since_sample -= len(victims)
        self.metrics.http_connections_shed += len(victims)
        if victims:
            self._warn(
                "descriptors near RLIMIT_NOFILE - MOOSIC_FD_RESERVE: closed %d unauthenticated "
                "connections (%d shed so far)",
                len(victims),
                self.metrics.http_connections_shed,
            )
        return len(victims) >= count

    def release(self, handler: GatewayRequestHandler) -> None:
        """Stop counting a connection: it signed in, became a WebSocket, or closed."""
        host = self._unauthenticated.pop(handler, None)
        if host is None:
            return
        left = self._per_address.get(host, 1) - 1
        if left > 0:
            self._per_address[host] = left
        else:
            self._per_address.pop(host, None)

    def _warn(self, message: str, *args: object) -> None:
        now = self._loop.time()
        if now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            log.warning(message, *args)


# -- the protocol and the server ---------------------------------------------------------------


class GatewayRequestHandler(RequestHandler):
    """aiohttp's connection protocol, with the admission, timeouts and answers above."""

    __slots__ = ("_body", "_drop_after", "_guard", "_metrics", "_partial")

    def __init__(
        self, manager: GatewayServer, *, guard: ConnectionGuard, metrics: Metrics, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._metrics = metrics
        self._partial = False
        """Bytes of a request arrived since the last answer that did not make a request yet."""
        self._drop_after = False
        """Close the connection after the answer being made, instead of lingering for the body."""
        self._body: StreamReader | None = None
        """The body of the last request parsed, until it is answered."""

    @property
    def busy(self) -> bool:
        return self._request_in_progress

    def signed_in(self) -> None:
        self._guard.release(self)

    def drop_after_answer(self) -> None:
        self._drop_after = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) and peer else "unknown"
        refusal = self._guard.admit(self, str(host))
        super().connection_made(transport)
        if refusal is None:
            return
        # Answered before reading anything; no request is parsed on this connection.
        self._force_close = True
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
            self._keepalive_handle = None
        if self._waiter is not None:
            self._waiter.cancel()
        message = (
            "too many connections from your address that have not signed in"
            if refusal is TOO_MANY_CONNECTIONS
            else "the server is at its connection capacity; retry shortly"
        )
        tcp = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        tcp.write(raw_answer(refusal, message))
        if refusal is SERVER_BUSY:
            tcp.close()  # no descriptor to spare for a linger: closed once the answer is out
            return
        if tcp.can_write_eof():
            tcp.write_eof()  # FIN after the answer; reading goes on, so close sends no reset
        self._loop.call_later(REFUSED_LINGER, tcp.abort)

    def data_received(self, data: bytes) -> None:
        if self._force_close or self._close:
            return
        before = self._request_count
        super().data_received(data)
        if self._request_count > before:
            self._partial = False
            self._body = self._messages[-1][1] if self._messages else None
        elif data and self._payload_parser is None and not self._upgraded:
            self._partial = True

    def _process_keepalive(self) -> None:
        # aiohttp closes an idle connection here (waiting for a request, time passed); one
        # with a half-sent request is told why first.
        if (
            self._partial
            and not self._force_close
            and self._keepalive
            and self._waiter is not None
            and not self._waiter.done()
            and self._loop.time() >= self._next_keepalive_close_time
            and self.transport is not None
        ):
            self._guard.metrics.http_header_timeouts += 1
            self.transport.write(
                raw_answer(REQUEST_TIMEOUT, "the request headers did not arrive in time")
            )
        super()._process_keepalive()

    async def finish_response(
        self, request: BaseRequest, resp: StreamResponse, start_time: float | None
    ) -> tuple[StreamResponse, bool]:
        answer = await super().finish_response(request, resp, start_time)
        self._partial = False
        if self._body is request.content:
            self._body = None
        if self._drop_after and not request.content.is_eof():
            self.force_close()  # the rest of the body is not worth reading
        self._drop_after = False
        return answer

    def connection_lost(self, exc: BaseException | None) -> None:
        body = self._body
        if body is not None and not body.is_eof() and body.exception() is None:
            # Left mid-body (the handler may not have started yet): fail the body at once.
            self._guard.metrics.http_client_disconnects += 1
            log.info("client %s left in the middle of a request body", self._peer_host())
            body.set_exception(ConnectionResetError("the client left mid-body"))
        self._body = None
        self._guard.release(self)
        super().connection_lost(exc)

    def _peer_host(self) -> str:
        peer = self.peername
        return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> StreamResponse:
        """JSON answers for what fails outside the app: never the input, never its text."""
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was sent already")
        if status == 400:
            self._guard.metrics.http_bad_requests += 1
            # The exception's text quotes the input (a header line can be a token): only its type.
            log.debug(
                "unparsable request from %s: %s", request.remote, type(exc).__name__ if exc else ""
            )
            error = OpError(BAD_REQUEST, "the HTTP request could not be parsed")
        else:
            self._metrics.internal_errors += 1
            log.error("error %d outside the app for %s", status, request.remote, exc_info=exc)
            error = OpError(INTERNAL_ERROR, "internal error")
        resp = json_response(error.to_dict(), status=400 if status == 400 else 500)
        resp.headers.update(SECURITY_HEADERS)
        resp.force_close()
        return resp


class GatewayServer(Server):
    """aiohttp's ``Server`` making :class:`GatewayRequestHandler` protocols."""

    def __init__(
        self, handler: Any, *, guard: ConnectionGuard, metrics: Metrics, **kwargs: Any
    ) -> None:
        super().__init__(handler, **kwargs)
        self.guard = guard
        self.metrics = metrics

    def __call__(self) -> RequestHandler:
        return GatewayRequestHandler(
            self, guard=self.guard, metrics=self.metrics, loop=self._loop, **self._kwargs
        )

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        # Also called by gateway/ws/upgrade.py when a socket becomes a WebSocket (signed in by then).
        if isinstance(handler, GatewayRequestHandler):
            self.guard.release(handler)
        super().connection_lost(handler, exc)


class GatewayRunner(web.AppRunner):
    """``AppRunner`` whose server is a :class:`GatewayServer`."""

    async def _make_server(self) -> Server:
        loop = asyncio.get_running_loop()
        app = self.app
        app._set_loop(loop)  # noqa: SLF001 - as AppRunner._make_server does
        app.on_startup.freeze()
        await app.startup()
        app.freeze()
        settings: Settings = app[SETTINGS]
        guard = ConnectionGuard(
            max_per_address=settings.http.http_max_unauthenticated_per_address,
            fd_reserve=settings.server.fd_reserve,
            trusted=settings.guard.trusted_proxies,
            metrics=app[METRICS],
            loop=loop,
        )
        metrics = app[METRICS]
        metrics.gauges["http_unauthenticated_connections"] = lambda: guard.unauthenticated
        metrics.gauges["open_fds"] = lambda: guard.open_fds
        return GatewayServer(
            app._handle,  # noqa: SLF001
            request_factory=app._make_request,  # noqa: SLF001
            loop=loop,
            guard=guard,
            metrics=metrics,
            **self._kwargs,
        )


# -- the body middleware -------------------------------------------------------------------------


class _BodyWatch:
    """Fails a request's payload once its body falls behind the minimum rate."""

    __slots__ = ("_handle", "_rate", "_request", "_start", "_timeout", "fired")

    def __init__(self, request: web.Request, timeout: float, rate: int) -> None:
        loop = asyncio.get_running_loop()
        self._request = request
        self._timeout = timeout
        self._rate = rate
        self._start = loop.time()
        self.fired = False
        self._handle: asyncio.TimerHandle | None = loop.call_at(self._start + timeout, self._check)

    def _check(self) -> None:
        self._handle = None
        payload = self._request.content
        if payload.is_eof() or payload.exception() is not None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        received = payload.total_bytes
        # Unread bytes waiting in the payload: the handler is the slow one, not the client.
        waiting = getattr(payload, "_size", 0) > 0
        if waiting or received >= self._rate * (now - self._start):
            due = max(self._start + received / self._rate, now + 0.25)
            self._handle = loop.call_at(due, self._check)
            return
        self.fired = True
        payload.set_exception(
            BodyTimeoutError(
                f"the request body is too slow: after {self._timeout:g} s it must average "
                f"{self._rate} bytes a second"
            )
        )

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def _protocol(request: web.Request) -> GatewayRequestHandler | None:
    protocol = request.protocol
    return protocol if isinstance(protocol, GatewayRequestHandler) else None


@web.middleware
async def http_limits(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Body size from ``Content-Length``, the body's pace, and clients that leave mid-body."""
    settings = request.app[SETTINGS]
    metrics = request.app[METRICS]
    protocol = _protocol(request)
    if protocol is not None and IDENTITY in request:
        protocol.signed_in()  # the limits middleware verified its token
    length = request.content_length
    limit = _BODY_LIMITS.get(request.path, settings.http.rest_max_body_bytes)
    if limit is not None and length is not None and length > limit:
        if protocol is not None:
            protocol.drop_after_answer()
        raise OpError(REQUEST_TOO_LARGE, f"request bodies are at most {limit} bytes")
    watch = None
    if not request.content.is_eof():
        watch = _BodyWatch(
            request, settings.http.http_body_timeout, settings.http.http_body_min_rate
        )
    try:
        return await handler(request)
    except BodyTimeoutError as exc:
        metrics.http_body_timeouts += 1
        if protocol is not None:
            protocol.drop_after_answer()
        return error_response(exc)
    except (ConnectionError, ClientPayloadError, RequestPayloadError) as exc:
        transport = request.transport
        gone = transport is None or transport.is_closing()
        if not gone and request.content.exception() is None:
            raise  # not the request's own stream: let the error middleware judge it
        if protocol is not None:
            protocol.drop_after_answer()
        if gone:  # counted and logged when the connection was lost; this answer is not sent
            return error_response(OpError(BAD_REQUEST, "the connection closed mid-request"))
        metrics.http_bad_requests += 1
        log.info("malformed body from %s: %s", request.remote, type(exc).__name__)
        return error_response(OpError(BAD_REQUEST, "the request body is malformed"))
    finally:
        if watch is not None:
            watch.cancel()


def setup(app: web.Application) -> None:
    """Add :func:`http_limits` (the innermost middleware)."""
    app.middlewares.append(http_limits)


# -- running -------------------------------------------------------------------------------------


async def _serve(runner: GatewayRunner, settings: Settings) -> None:
    await runner.setup()
    try:
        # as web.run_app; see FD_RESERVE
        site = web.TCPSite(runner, settings.server.host, settings.server.port, backlog=128)
        await site.start()
        if settings.http.server_api_port is not None:
            # The server API's own port (gateway/http/server_api.py decides what each serves).
            private = web.TCPSite(
                runner, settings.http.server_api_host, settings.http.server_api_port, backlog=128
            )
            await private.start()
        # Everything made at start-up (modules, settings, the app) lives as long as the
        # process: keep it out of the collector's full passes, which otherwise scan it all
        # (measured: 22-27 ms pauses of the event loop during a clickstream flood; none after).
        gc.collect()
        gc.freeze()
        # Counted once: gc.get_freeze_count() walks every frozen object (about 5 ms a call
        # here, which a scrape would add to the loop each time).
        frozen = float(gc.get_freeze_count())
        runner.app[METRICS].gauges["gc_frozen_objects"] = lambda: frozen
        await asyncio.Event().wait()  # until cancelled (SIGINT/SIGTERM)
    finally:
        await runner.cleanup()


def run(
    app: web.Application, settings: Settings, access_log_class: type[AbstractAccessLogger]
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, as ``web.run_app`` does, on a :class:`GatewayServer`."""
    loop = asyncio.new_event_loop()
    runner = GatewayRunner(
        app,
        handle_signals=True,
        access_log_class=access_log_class,
        shutdown_timeout=settings.server.shutdown_timeout,
        keepalive_timeout=settings.http.http_keepalive_timeout,
    )
    main = loop.create_task(_serve(runner, settings))
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    except (GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            rest = asyncio.all_tasks(loop)
            for task in rest:
                task.cancel()
            if rest:
                loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
