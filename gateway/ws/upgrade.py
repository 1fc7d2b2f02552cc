"""``GET /ws``: origin, country, token, limits and handshake, then the socket is ours.

aiohttp parses the upgrade request and the gateway checks the Origin, the country, the token,
the user's connection rate and count before anything is upgraded, so refusals are plain HTTP
answers with a JSON body. The gateway then writes the ``101`` response itself and hands the
transport to a :class:`gateway.ws.connection.Connection`; aiohttp's request handler lets go of it
(see :func:`_detach`). From then on the connection costs one small object, not a request, a
response, a reader, a writer and a task.
"""

from __future__ import annotations

import base64
import binascii
import logging

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway.guard.edge import authenticate, check_country, check_origin, client_address, limit
from gateway.keys import SETTINGS, WS_NODE
from gateway.ws.connection import Connection, WsNode
from gateway.ws.frames import upgrade_response
from handlers.errors import INVALID_FRAME, TOO_MANY_CONNECTIONS, OpError

log = logging.getLogger(__name__)


class _Detached(web.StreamResponse):
    """The answer aiohttp sees once the socket has been handed over: it writes nothing."""

    def __init__(self) -> None:
        super().__init__(status=101)
        self.force_close()

    async def prepare(self, request: web.BaseRequest) -> None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


def _handshake_key(request: web.Request) -> str:
    """Check the upgrade headers (RFC 6455 section 4.2.1) and return the client's key."""
    headers = request.headers
    upgrade = headers.get("Upgrade", "").lower()
    connection = {token.strip().lower() for token in headers.get("Connection", "").split(",")}
    if upgrade != "websocket" or "upgrade" not in connection:
        raise OpError(INVALID_FRAME, "GET /ws expects a WebSocket upgrade")
    if headers.get("Sec-WebSocket-Version") != "13":
        raise web.HTTPUpgradeRequired(
            headers={"Sec-WebSocket-Version": "13"}, reason="WebSocket version 13 is required"
        )
    key = headers.get("Sec-WebSocket-Key", "")
    try:
        nonce = base64.b64decode(key, validate=True)
    except binascii.Error:
        nonce = b""
    if len(nonce) != 16:
        raise OpError(INVALID_FRAME, "Sec-WebSocket-Key is not 16 bytes in base64")
    return key


def _detach(request: web.Request) -> bytes:
    """Make aiohttp's request handler forget the socket; return bytes it read past the request.

    This reaches into aiohttp's ``RequestHandler`` (hence the pinned aiohttp version and the
    tests over real sockets): it must neither parse the rest of the stream as HTTP, nor close
    the transport when the handler returns, nor keep counting the connection as its own.
    """
    handler = request.protocol
    assert isinstance(handler, RequestHandler)
    tail = bytes(handler._message_tail)  # noqa: SLF001
    handler._message_tail = b""  # noqa: SLF001
    handler._upgraded = False  # noqa: SLF001
    manager = handler._manager  # noqa: SLF001
    if manager is not None:
        manager.connection_lost(handler, None)
    # Its keep-alive timer would hold the handler (its parser, the request's headers: ~5 KiB a
    # socket) until it fires; nothing of HTTP is parsed on this socket again.
    keepalive = handler._keepalive_handle  # noqa: SLF001
    if keepalive is not None:
        keepalive.cancel()
        handler._keepalive_handle = None  # noqa: SLF001
    handler._parser = None  # noqa: SLF001
    handler.transport = None
    return tail


async def websocket(request: web.Request) -> web.StreamResponse:
    check_origin(request)
    country = check_country(request)
    identity = authenticate(request, allow_query=True)
    key = _handshake_key(request)
    node: WsNode = request.app[WS_NODE]
    await limit(request, "connect", identity.user_id)
    await limit(request, "connect_ip", client_address(request))
    cap = request.app[SETTINGS].guard.max_connections_per_user
    if len(node.hub.members_of(identity.user_id)) >= cap:
        raise OpError(TOO_MANY_CONNECTIONS, f"at most {cap} connections per user; close one first")
    transport = request.transport
    if transport is None or transport.is_closing():  # the peer left meanwhile
        raise web.HTTPBadRequest(reason="connection closed")
    conn = Connection(identity.user_id, node, country)
    conn.renew(identity)
    transport.write(upgrade_response(key))
    tail = _detach(request)
    transport.set_protocol(conn)
    conn.connection_made(transport)
    transport.resume_reading()  # aiohttp may have paused it while the request was handled
    node.metrics.ws_connections_opened += 1
    node.hub.add_member(conn)
    if tail:
        conn.data_received(tail)
    return _Detached()
