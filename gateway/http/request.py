"""Request helpers shared by the REST routes and the WebSocket upgrade."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import msgspec
import orjson
from aiohttp import web

from gateway.auth.tokens import Identity
from gateway.http.security import IDENTITY
from gateway.keys import GATE, SERVICES, TOKENS
from handlers.base import Context, Operation, Result
from handlers.errors import (
    COUNTRY_NOT_ALLOWED,
    INVALID_JSON,
    INVALID_PARAMS,
    UNAUTHORIZED,
    UNSUPPORTED_MEDIA_TYPE,
    OpError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


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
