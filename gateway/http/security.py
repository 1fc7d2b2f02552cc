"""Request-level defences: rate limits on REST, the WebSocket Origin check, security headers.

See docs/security.md for what each one stops and where it stops.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.keys import GATE, LIMITER, SETTINGS, TOKENS
from handlers.base import Identity
from handlers.errors import ORIGIN_NOT_ALLOWED, OpError

IDENTITY = web.RequestKey("identity", Identity)
"""The verified access token of a REST request, once the limits middleware has seen it."""

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


def client_address(request: web.Request) -> str:
    """The client's address: the peer, or behind a trusted proxy the forwarded one."""
    return request.app[GATE].client_address(request.remote, request.headers) or "unknown"


async def limit(request: web.Request, rule: str, subject: str) -> None:
    """Take a token of ``rule`` for ``subject`` or raise ``rate_limited``."""
    await request.app[LIMITER].check(rule, subject)


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


def check_origin(request: web.Request) -> None:
    """Refuse a WebSocket opened by a web page of an origin that is not allowed.

    Browsers always send ``Origin`` on a WebSocket handshake and scripts cannot change it, so
    this stops a page elsewhere from opening a socket with a visitor's credentials
    (cross-site WebSocket hijacking). Apps and other non-browser clients send no ``Origin``
    (or could send any): a request without one passes, the token is what guards them.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return
    allowed = request.app[SETTINGS].guard.ws_allowed_origins
    if allowed is None or origin.strip().lower().rstrip("/") in allowed:
        return
    raise OpError(
        ORIGIN_NOT_ALLOWED, f"WebSocket connections from {origin[:100]!r} are not allowed"
    )
