"""``python -m tests.clickstream.node``: a gateway process with the clickstream set up.

The gateway's own entry point and, once it runs, ``CLICKSTREAM_TEST_EVENTS`` events of
``CLICKSTREAM_TEST_USERS`` users taken by its intake, as the ``track`` op would take them. The
test then sends SIGTERM and reads the files.
"""

from __future__ import annotations

import logging
import os
import time

from aiohttp import web

from gateway.__main__ import AccessLogger
from gateway.app import create_app
from gateway.clickstream import service
from gateway.http.server import run as serve
from gateway.settings import load_settings


def main() -> None:
    settings = load_settings(os.environ)
    logging.basicConfig(level=settings.server.log_level)
    app = create_app(settings)
    clickstream = app[service.CLICKSTREAM]
    users = int(os.environ["CLICKSTREAM_TEST_USERS"])
    per_user = int(os.environ["CLICKSTREAM_TEST_EVENTS"]) // users

    async def feed(_app: web.Application) -> None:
        now_ms = int(time.time() * 1000)
        for user in range(users):
            items = [
                b'{"type":"view_start","event_id":"e%d","client_ts":%d,"video_id":"v%d"}'
                % (n, now_ms, n % 10)
                for n in range(per_user)
            ]
            clickstream.intake.take(f"user{user}", "KH", items)

    app.on_startup.append(feed)
    serve(app, settings, AccessLogger)


if __name__ == "__main__":
    main()
