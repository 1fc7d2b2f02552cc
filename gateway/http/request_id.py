"""A request id per REST call (issue 17): an incoming X-Request-Id is kept when it is 1-64 of
[A-Za-z0-9._-], else a fresh one is made; it is set in gateway.logs.request_id for every line
logged while the request runs and returned in the response's X-Request-Id header."""

from __future__ import annotations

import re
import secrets

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway import logs

_VALID = re.compile(r"[A-Za-z0-9._-]{1,64}")
REQUEST_ID = web.RequestKey("request_id", str)
"""The request's key for its id: the access log line is written after the handler returned."""


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    rid = incoming if _VALID.fullmatch(incoming) else secrets.token_hex(8)
    request[REQUEST_ID] = rid
    token = logs.request_id.set(rid)
    try:
        response = await handler(request)
    finally:
        logs.request_id.reset(token)
    if not response.prepared:
        response.headers["X-Request-Id"] = rid
    return response
