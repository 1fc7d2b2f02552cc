"""Every route the gateway serves, and the OpenAPI 3.1 document of them (``/v1/openapi.json``).

:data:`TABLES` gathers the route tables of the domain modules (each declares its routes once,
:mod:`gateway.http.routes`) and this module's own; the app mounts them and :func:`document`
describes them, so the document has every route and nothing else. Request bodies and
parameters come from the same msgspec structs the routes decode with, so their constraints
cannot drift; limits that are settings (history page, long-poll wait) come from the node's
settings. Result shapes are declared next to the routes and checked by the test suite against
live answers (schemathesis).
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from aiohttp import web

from gateway.http import devices, follows, media, notifications, rest, social
from gateway.http.routes import INTEGER, JSON, STRING, Route, RouteTable, ref
from gateway.keys import SETTINGS
from gateway.settings import Settings
from handlers.errors import ALL_KINDS

ERROR_TEXT = {
    400: "Bad request: `invalid_json`, `invalid_params`, `invalid_channel`, `invalid_frame` "
    "(and on the email routes `invalid_email`)",
    401: "Not signed in: `unauthorized`, `token_expired`, `session_revoked` (and on the "
    "sign-in routes `invalid_credentials`, `invalid_refresh_token`, `invalid_email_token`)",
    403: "Refused: `forbidden`, `country_not_allowed`, `origin_not_allowed`",
    404: "`not_found`",
    409: "`username_taken`, `email_taken`, `limit_exceeded`, `video_not_ready`",
    410: "A mailed token that is used up or expired: `email_token_used`, `email_token_expired`",
    413: "`request_too_large`, `message_too_large`",
    415: "`unsupported_media_type`",
    426: "`Sec-WebSocket-Version` other than 13",
    429: "`rate_limited` (with `retry_after` and a `Retry-After` header), `too_many_connections`",
    503: "`unavailable` or `server_busy`: retry with backoff",
}

ROUTES = RouteTable(
    {
        "Error": {
            "type": "object",
            "properties": {
                "code": {"enum": sorted(kind.code for kind in ALL_KINDS)},
                "message": STRING,
                "retryable": {"type": "boolean"},
                "retry_after": {"type": "number", "exclusiveMinimum": 0},
            },
            "required": ["code", "message", "retryable"],
            "additionalProperties": False,
        },
    }
)


@ROUTES.route(
    "GET",
    "/v1/openapi.json",
    "This document",
    ok={200: None},
    errors=(429,),
    auth=False,
    tag="ops",
)
async def openapi_document(request: web.Request) -> web.Response:
    body = document_bytes(request.app[SETTINGS])
    return web.Response(body=body, content_type="application/json")


TABLES: tuple[RouteTable, ...] = (
    rest.ROUTES,
    social.ROUTES,
    follows.ROUTES,
    devices.ROUTES,
    notifications.ROUTES,
    media.ROUTES,
    ROUTES,
)
"""Every route, in the order the app mounts them."""


def _operation(route: Route, settings: Settings) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, schema in sorted(route.responses.items()):
        answer: dict[str, Any] = {"description": "success" if status < 300 else "see schema"}
        if status == 101:
            answer["description"] = "Switching Protocols: the socket is open"
        elif status == 304:
            answer["description"] = "Not Modified: `If-None-Match` matched the `ETag`; no body"
        elif route.text:
            answer["content"] = {"text/plain": {"schema": STRING}}
        elif schema is None:
            answer["content"] = {JSON: {"schema": {"type": "object"}}}
        else:
            answer["content"] = {JSON: {"schema": ref(schema)}}
        responses[str(status)] = answer
    for status in sorted(set(route.errors)):
        answer = {"description": ERROR_TEXT[status], "content": {JSON: {"schema": ref("Error")}}}
        if status == 429:
            answer["headers"] = {
                "Retry-After": {
                    "description": "seconds to wait (`rate_limited` only)",
                    "schema": INTEGER,
                }
            }
        responses[str(status)] = answer
    request = route.request_schema(settings)
    query = dict(route.query)
    if request is not None and not route.in_body:
        query = {**request["properties"], **query}
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": schema}
        for name, schema in route.path_params.items()
    ] + [
        {"name": name, "in": "query", "required": False, "schema": _scalar(schema)}
        for name, schema in query.items()
    ]
    operation: dict[str, Any] = {
        "summary": route.summary,
        "operationId": f"{route.method.lower()} {route.doc_path}",
        "tags": [route.tag],
        "responses": responses,
    }
    if parameters:
        operation["parameters"] = parameters
    if request is not None and route.in_body:
        # Required when the params struct has required fields (a missing body decodes as `{}`
        # and is refused with `invalid_params`); optional when every field has a default.
        operation["requestBody"] = {
            "required": bool(request.get("required")),
            "content": {JSON: {"schema": {**request, "type": "object"}}},
        }
    if route.form is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"multipart/form-data": {"schema": route.form}},
        }
    operation["security"] = [{"bearer": []}] if route.auth else []
    return operation


def _scalar(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: optional fields are ``T | null`` in msgspec; the query
    string has no null, so keep the non-null alternative."""
    options = schema.get("anyOf")
    if options:
        kept = [option for option in options if option.get("type") != "null"]
        if len(kept) == 1:
            rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
            return {**kept[0], **rest}
    return {k: v for k, v in schema.items() if k != "default"}


def document(settings: Settings) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for table in TABLES:
        for route in table:
            methods = paths.setdefault(route.doc_path, {})
            if route.method.lower() in methods:
                raise ValueError(f"{route.method} {route.doc_path} is declared twice")
            methods[route.method.lower()] = _operation(route, settings)
        for name, schema in table.schemas.items():
            if schemas.setdefault(name, schema) is not schema:
                raise ValueError(f"two schemas are named {name!r}")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Moosic Gateway",
            "version": "1",
            "description": "REST endpoints of the Moosic Gateway; the WebSocket protocol and "
            "every error code are described in docs/protocol.md. Integers in JSON bodies are "
            "written without a fraction (`16`, not `16.0`: `invalid_params`).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


@functools.lru_cache(maxsize=8)
def document_bytes(settings: Settings) -> bytes:
    return orjson.dumps(document(settings))
