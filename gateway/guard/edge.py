"""The checks both transports make of a request at the edge, before any op runs.

The REST routes and the WebSocket upgrade (``gateway/ws/upgrade.py``) call the same functions:
the client's address and country (behind trusted proxies), the ``Origin`` of a WebSocket
handshake, a rate-limit token, and the access token. Each refuses with an ``OpError`` whose
code the transport turns into its own answer (a JSON error, or a refused upgrade).
"""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.auth.tokens import Identity
from gateway.keys import GATE, LIMITER, SETTINGS, TOKENS
from handlers.errors import COUNTRY_NOT_ALLOWED, ORIGIN_NOT_ALLOWED, UNAUTHORIZED, OpError

log = logging.getLogger(__name__)

IDENTITY = web.RequestKey("identity", Identity)
"""The verified access token of a REST request, once the limits middleware has seen it."""


def client_address(request: web.Request) -> str:
    """The client's address: the peer, or behind a trusted proxy the forwarded one."""
    return request.app[GATE].client_address(request.remote, request.headers) or "unknown"


async def limit(request: web.Request, rule: str, subject: str) -> None:
    """Take a token of ``rule`` for ``subject`` or raise ``rate_limited``."""
    await request.app[LIMITER].check(rule, subject)


def check_country(request: web.Request) -> str | None:
    """Raise ``country_not_allowed`` unless the request comes from an allowed country; say which."""
    verdict = request.app[GATE].check(request.remote, request.headers)
    if not verdict.allowed:
        log.info(
            "refused %s %s from %s: %s",
            request.method,
            request.path,
            verdict.client_ip,
            verdict.reason,
        )
        raise OpError(COUNTRY_NOT_ALLOWED, f"not available in your country ({verdict.reason})")
    return verdict.country


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


def authenticate(request: web.Request, *, allow_query: bool = False) -> Identity:
    """Verify the access token from ``Authorization: Bearer`` (or ``?token=`` when allowed)."""
    header = request.headers.get("Authorization", "")
    token = ""
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise OpError(UNAUTHORIZED, "the Authorization header must be 'Bearer <token>'")
        token = value.strip()
    elif allow_query:
        token = request.query.get("token", "")
    if not token:
        raise OpError(UNAUTHORIZED, "an access token is required")
    if header and IDENTITY in request:
        return request[IDENTITY]  # verified by the limits middleware, to count the user
    return request.app[TOKENS].verify(token)
