"""The web app and the JavaScript SDK: ``/``, ``/app/*`` (files of ``web/``), ``/sdk/moosic.js``.

Static files, no build step, served with a Content-Security-Policy of their own that allows
exactly what the app does: its own scripts and styles, ``fetch`` and the WebSocket to this host,
images and video from this host (and from the CloudFront domain when playback goes there).
Every other answer of the gateway keeps the API's policy that allows nothing
(:data:`gateway.http.security.SECURITY_HEADERS`): the headers set here are set on these answers
only, and ``add_security_headers`` fills in the rest without overriding them.

The page opens a WebSocket with an ``Origin`` header, so the origin the app is served from must
be in ``MOOSIC_WS_ALLOWED_ORIGINS`` (docs/web.md); without it the SDK falls back to REST and the
long poll.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from gateway.keys import SETTINGS
from handlers.errors import NOT_FOUND, OpError

ROOT = Path(__file__).resolve().parents[2]
WEB_DIR = ROOT / "web"
SDK_FILE = ROOT / "sdk" / "js" / "moosic.js"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
}
"""The only kinds of file served: anything else under ``web/`` is ``not_found``."""

_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")

routes = web.RouteTableDef()


def content_security_policy(host: str | None, media_hosts: tuple[str, ...] = ()) -> str:
    """The page's policy: same-origin scripts, styles, fetch, WebSocket, images and media."""
    connect = ["'self'"]
    if host and _HOST.fullmatch(host):
        connect += [f"ws://{host}", f"wss://{host}"]
    media = ["'self'", "blob:", *(f"https://{name}" for name in media_hosts)]
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src 'self' data: {' '.join(media[2:])}".rstrip(),
            f"media-src {' '.join(media)}",
            f"connect-src {' '.join(connect)}",
            "manifest-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def page_headers(request: web.Request) -> dict[str, str]:
    """Headers of a web app or SDK answer (the API's other security headers still apply)."""
    settings = request.app[SETTINGS]
    media_hosts = (settings.media.cloudfront_domain,) if settings.media.cloudfront_domain else ()
    return {
        "Content-Security-Policy": content_security_policy(request.host, media_hosts),
        "Cache-Control": "no-cache",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
    }


def _file(request: web.Request, path: Path) -> web.FileResponse:
    content_type = CONTENT_TYPES.get(path.suffix)
    if content_type is None or not path.is_file():
        raise OpError(NOT_FOUND, "no such file")
    headers = {**page_headers(request), "Content-Type": content_type}
    return web.FileResponse(path, headers=headers)


@routes.get("/")
async def index(request: web.Request) -> web.FileResponse:
    return _file(request, WEB_DIR / "index.html")


@routes.get("/app/{path:.+}")
async def app_file(request: web.Request) -> web.FileResponse:
    """A file of ``web/``: plain names in plain folders, no dot-files, no ``..``, no links."""
    parts = request.match_info["path"].split("/")
    if not all(_SAFE_NAME.fullmatch(part) and ".." not in part for part in parts):
        raise OpError(NOT_FOUND, "no such file")
    path = WEB_DIR.joinpath(*parts)
    if any(p.is_symlink() for p in [path, *path.parents] if p.is_relative_to(WEB_DIR)):
        raise OpError(NOT_FOUND, "no such file")
    return _file(request, path)


@routes.get("/sdk/moosic.js")
async def sdk(request: web.Request) -> web.FileResponse:
    return _file(request, SDK_FILE)


def pages() -> set[tuple[str, str]]:
    """(method, path) of what this module serves: pages and the SDK, not the API (they are in
    docs/web.md, not in docs/protocol.md or the OpenAPI document)."""
    return {
        (r.method, re.sub(r"\{(\w+):[^}]*\}", r"{\1}", r.path))  # as resource.canonical
        for r in routes
        if isinstance(r, web.RouteDef)
    }


def setup(app: web.Application) -> None:
    """Serve the web app and the SDK."""
    app.router.add_routes(routes)
