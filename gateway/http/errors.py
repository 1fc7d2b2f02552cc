"""HTTP side of errors: one JSON shape for every failure, and the middleware that makes it."""

from __future__ import annotations

import logging
import math

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.keys import METRICS
from handlers.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    REQUEST_TOO_LARGE,
    ErrorKind,
    OpError,
    RateLimitedError,
    as_op_error,
)

log = logging.getLogger(__name__)

_HTTP_KINDS: dict[int, ErrorKind] = {
    404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    413: REQUEST_TOO_LARGE,
}


_KEPT_HEADERS = ("Allow", "Sec-WebSocket-Version")
"""Headers of aiohttp's HTTP errors that a client needs (405 and 426)."""


def json_response(
    data: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def error_response(error: OpError, headers: dict[str, str] | None = None) -> web.Response:
    if isinstance(error, RateLimitedError):
        headers = {**(headers or {}), "Retry-After": str(max(1, math.ceil(error.retry_after)))}
    return json_response(error.to_dict(), status=error.kind.status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into ``{"code", "message", "retryable"}`` with the code's status."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind = _HTTP_KINDS.get(exc.status)
        if kind is None:
            kind = ErrorKind(INVALID_PARAMS.code, exc.status, False)
        kept = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
        return error_response(OpError(kind, exc.reason), kept or None)
    except Exception as exc:
        error = as_op_error(exc)
        if error is None:
            log.exception("unhandled error in %s %s", request.method, request.path)
            request.app[METRICS].internal_errors += 1
            error = OpError(INTERNAL_ERROR, "internal error")
        return error_response(error)
