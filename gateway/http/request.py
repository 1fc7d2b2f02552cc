"""Request helpers of the REST routes: the op call, its context, JSON bodies and params."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import msgspec
import orjson
from aiohttp import web

from gateway.guard.edge import authenticate
from gateway.keys import SERVICES
from handlers.base import Context, Operation, Result
from handlers.errors import (
    INVALID_JSON,
    INVALID_PARAMS,
    UNSUPPORTED_MEDIA_TYPE,
    OpError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


async def call(request: web.Request, op: Operation[Any], *, body: bool = False) -> Result:
    """Authenticate a REST request, build the op's params from it, and run the op."""
    return await op(context(request), await read_params(request, op.params, body=body))


def context(request: web.Request) -> Context:
    """Authenticate a REST request and return its handler context (no session)."""
    return Context(authenticate(request).user_id, request.app[SERVICES])


def require_json(request: web.Request) -> None:
    """Refuse a body declared as anything but JSON, before reading it (``unsupported_media_type``).

    ``text/plain``, forms and ``multipart`` (the types a web page may send elsewhere without
    asking first) and any other declared type are refused; no ``Content-Type`` and
    ``application/octet-stream`` (what HTTP libraries say of bytes of no declared type) are read
    as JSON.
    """
    if not request.body_exists or request.content_length == 0:
        return
    kind = request.content_type  # application/octet-stream when there is no header
    if kind in ("application/json", "application/octet-stream") or (
        kind.startswith("application/") and kind.endswith("+json")
    ):
        return
    raise OpError(UNSUPPORTED_MEDIA_TYPE, "the request body must be application/json")


async def read_body(request: web.Request, kind: type[T]) -> T:
    """Decode and validate a JSON body into ``kind``."""
    require_json(request)
    body = await request.read()
    try:
        body.decode("utf-8")  # msgspec does not check the UTF-8 of Raw values
        return msgspec.json.decode(body or b"{}", type=kind)
    except UnicodeDecodeError:
        raise OpError(INVALID_JSON, "the body is not valid UTF-8") from None
    except RecursionError:
        raise OpError(INVALID_JSON, "the body is nested too deeply") from None
    except msgspec.ValidationError as exc:
        raise OpError(INVALID_PARAMS, str(exc)) from None
    except msgspec.DecodeError:
        raise OpError(INVALID_JSON, "the body is not valid JSON") from None


async def read_params(request: web.Request, kind: type[T], *, body: bool = False) -> T:
    """Build ``kind`` from the path, the query string and (optionally) a JSON object body."""
    merged: dict[str, Any] = {**request.query, **request.match_info}
    if body:
        require_json(request)
        raw = await request.read()
        try:
            doc = orjson.loads(raw or b"{}")
        except orjson.JSONDecodeError:
            raise OpError(INVALID_JSON, "the body is not valid JSON") from None
        if not isinstance(doc, dict):
            raise OpError(INVALID_PARAMS, "the body must be a JSON object")
        merged = {**doc, **merged}
    try:
        return msgspec.convert(merged, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise OpError(INVALID_PARAMS, str(exc)) from None
