"""``python -m gateway``: validate settings, then serve until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from gateway import logs
from gateway.app import create_app
from gateway.http.request_id import REQUEST_ID
from gateway.http.server import run as serve
from gateway.settings import Settings, SettingsError, load_settings

log = logging.getLogger("gateway")


class AccessLogger(AbstractAccessLogger):
    """Log method, path and status; never the query string (it can carry a token)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %.1fms',
            request.remote,
            request.method,
            request.path,
            response.status,
            time * 1000,
            extra={"request_id": request.get(REQUEST_ID)},
        )


def _event_loop_name() -> str:
    try:
        import uvloop  # optional: only where it installs
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def _announce(settings: Settings, loop_name: str) -> None:
    log.info(
        "Moosic Gateway on http://%s:%d (store=%s, broker=%s, loop=%s, countries=%s)",
        settings.server.host,
        settings.server.port,
        settings.storage.store,
        "redis" if settings.redis.redis_url else "in-process",
        loop_name,
        settings.guard.countries_label,
    )
    if settings.server.dev:
        log.warning(
            "development run (MOOSIC_DEV=1): loopback and private addresses pass the country gate"
        )
    if settings.auth.jwt_secret_generated:
        log.warning(
            "MOOSIC_JWT_SECRET is not set: generated a random one for this session; "
            "tokens will not survive a restart"
        )


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        print("Moosic Gateway cannot start; fix these settings:", file=sys.stderr)  # noqa: T201
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)  # noqa: T201
        return 2
    logs.configure(settings.server.log_format, settings.server.log_level)
    loop_name = _event_loop_name()
    _announce(settings, loop_name)
    # web.run_app's loop, on a server with the connection limits of gateway/http/server.py.
    serve(create_app(settings), settings, AccessLogger)
    return 0


if __name__ == "__main__":
    sys.exit(main())
