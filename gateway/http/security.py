"""Request-level defences of REST: its rate limits and the security headers of every answer.

The checks the WebSocket upgrade shares (address, country, Origin, token) are in
``gateway/guard/edge.py``.

See docs/security.md for what each one stops and where it stops.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.guard.edge import IDENTITY, client_address
from gateway.keys import LIMITER, TOKENS
from handlers.errors import OpError

UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/ws"})
"""Probes and scrapers are not counted; WebSocket opens have their own rules."""
UNLIMITED_PREFIXES = ("/v1/media/play/", "/server/")
"""Signed, short-lived playback links: an HLS player fetches many segments, and many viewers
can share one carrier address; the signature and its expiry are the control there. The server
API (trusted back ends, few addresses, many calls) is guarded by its API keys instead."""

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Strict-Transport-Security": "max-age=31536000",
}
"""Sent with every HTTP answer: it is an API, never a page to render, frame, sniff or cache."""


@web.middleware
async def rest_limits(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every REST request per client address and, when signed in, per user."""
    if request.path in UNLIMITED_PATHS or request.path.startswith(UNLIMITED_PREFIXES):
        return await handler(request)
    limiter = request.app[LIMITER]
    await limiter.check("rest", client_address(request))
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        try:
            identity = request.app[TOKENS].verify(token.strip())
        except OpError:
            pass  # the route refuses it if it needs a token; sign-in routes do not
        else:
            request[IDENTITY] = identity
            await limiter.check("rest_user", identity.user_id)
    return await handler(request)


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
