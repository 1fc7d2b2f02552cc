"""``GET /ws``: the country gate and token check before the upgrade, then one frame at a time.

Frames from one connection are handled in order, each to completion, so a client sees replies
in the order it sent requests. A frame the gateway cannot use gets an error reply and the
connection stays open; only frames over the hard size limit close it (1009), because their
bytes were never read into memory.
"""

from __future__ import annotations

import logging

from aiohttp import WSMsgType, web

from gateway.connection import Connection
from gateway.http import authenticate, check_country
from gateway.keys import HUB, METRICS, REGISTRY, SERVICES, SETTINGS
from handlers.errors import BINARY_NOT_SUPPORTED, FRAME_TOO_LARGE, INVALID_FRAME, OpError

log = logging.getLogger(__name__)


async def websocket(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings = app[SETTINGS]
    check_country(request)
    identity = authenticate(request, allow_query=True)
    ws = web.WebSocketResponse(
        heartbeat=settings.ws_heartbeat,
        max_msg_size=settings.ws_close_frame_bytes,
        compress=False,
        decode_text=False,
        timeout=settings.ws_close_timeout,
    )
    if not ws.can_prepare(request).ok:
        raise OpError(INVALID_FRAME, "GET /ws expects a WebSocket upgrade")
    await ws.prepare(request)
    transport = request.transport
    if transport is None:  # the peer left during the upgrade
        return ws
    hub = app[HUB]
    metrics = app[METRICS]
    registry = app[REGISTRY]
    max_frame = settings.ws_max_frame_bytes
    conn = Connection(
        identity.user_id,
        ws,
        transport,
        hub,
        app[SERVICES],
        metrics,
        max_backlog=settings.ws_max_backlog_bytes,
    )
    metrics.ws_connections_opened += 1
    hub.add_member(conn)
    try:
        async for message in ws:
            metrics.ws_frames_received += 1
            if message.type is WSMsgType.TEXT:
                data: bytes = message.data
                if len(data) > max_frame:
                    conn.error(
                        None, OpError(FRAME_TOO_LARGE, f"frames are at most {max_frame} bytes")
                    )
                    continue
                conn.send_payload(await registry.handle(conn.context, data))
            elif message.type is WSMsgType.BINARY:
                conn.error(None, OpError(BINARY_NOT_SUPPORTED, "send JSON in text frames"))
    finally:
        conn.detach()
        hub.remove_member(conn)
    return ws
