"""One declaration per HTTP route: the aiohttp route, its OpenAPI entry and its cache policy.

A :class:`Route` says everything about one method and path: who serves it (an op, called as
the WebSocket calls it, or a handler of its own), where its params come from (the op's params
struct, read from the path and the query string, or from a JSON body), what it answers (its
success statuses with their schemas, the error statuses it can return), whether it needs a
token, and its :class:`Cache` policy (``ETag``, ``Cache-Control`` and ``304``). Each domain
module (``rest``, ``social``, ``follows``, ``media``) fills a :class:`RouteTable` once;
:func:`mount` adds the tables to the app and :mod:`gateway.http.openapi` writes the document
from the same objects, so the two cannot disagree.

The JSON Schema pieces the declarations are written with are here too (``STRING``,
``obj``, ``struct_schema``...).
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import orjson
from aiohttp import web

from gateway.http.errors import json_response
from gateway.http.request import call
from gateway.keys import SETTINGS
from gateway.settings import Settings
from handlers.base import Operation
from storage import ids

JSON = "application/json"
Schema = dict[str, Any]
Adjust = Callable[[Schema, Settings], Schema]
"""Turns a field's schema as msgspec writes it into the documented one (a limit from settings,
a rule the struct cannot say)."""


# -- JSON Schema pieces --------------------------------------------------------------------

MAX_ID = 2**53 - 1
STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
OFFSET: Schema = {"type": "integer", "minimum": 0, "maximum": MAX_ID}
NULLABLE_STRING: Schema = {"type": ["string", "null"]}
BOOLEAN: Schema = {"type": "boolean"}
COUNT: Schema = {"type": "integer", "minimum": 0}
STORE_ID: Schema = {
    "type": "string",
    # What `storage.ids.is_valid` accepts: an id the store made (a feed item's, a comment's).
    "pattern": f"^[{ids._ALPHABET}]{{{ids.ID_LENGTH}}}$",  # noqa: SLF001 - the one source
}
SIGNED_IN = (400, 401, 429, 503)
"""The errors of every route that needs a token."""


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: Schema, optional: Schema | None = None) -> Schema:
    """A closed object with these required (and optional) properties."""
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
        "additionalProperties": False,
    }


def struct_schema(kind: type[Any], drop: Iterable[str] = ()) -> Schema:
    """The JSON Schema of a msgspec struct, without ``op``/``id`` and the fields in ``drop``."""
    (schema,), components = msgspec.json.schema_components([kind], ref_template="{name}")
    body = dict(components[schema["$ref"]])
    body.pop("title", None)
    gone = {"op", "id", *drop}
    body["properties"] = {k: v for k, v in body["properties"].items() if k not in gone}
    required = [k for k in body.get("required", []) if k not in gone]
    if required:
        body["required"] = required
    else:
        body.pop("required", None)
    return body


def cursor(schema: Schema, settings: Settings) -> Schema:
    """A ``before`` cursor: an id the store made, or nothing."""
    return {**schema, "anyOf": [STORE_ID, {"type": "null"}]}


def non_blank(schema: Schema, settings: Settings | None = None) -> Schema:
    """A text field the server refuses when it is only whitespace (`_non_blank`)."""
    options = schema.get("anyOf")
    if options:
        return {**schema, "anyOf": [non_blank(option) for option in options]}
    if schema.get("type") != "string":
        return schema
    return {**schema, "pattern": r"\S", "description": "not only whitespace"}


# -- caching -------------------------------------------------------------------------------


class Cache(enum.Enum):
    """What a route's successful JSON answers may be kept for."""

    NO_STORE = "no-store"
    """Nothing is kept: the security headers' ``Cache-Control: no-store``, no validator."""
    PRIVATE = "private"
    """A per-user read: ``ETag``, ``304`` to a matching ``If-None-Match``, ``private,
    no-cache`` (no shared cache may keep it)."""
    SHARED = "shared"
    """A read that is the same for every signed-in user when the handler says so
    (:attr:`Reply.shared`): ``public, max-age=MOOSIC_VIDEO_CACHE_SECONDS``, else as
    :attr:`PRIVATE`; ``ETag`` and ``304`` either way."""


def etag_of(payload: bytes) -> str:
    """A strong entity tag of a response body."""
    return '"' + hashlib.blake2b(payload, digest_size=12).hexdigest() + '"'


def etag_matches(header: str | None, etag: str) -> bool:
    """Tell whether an ``If-None-Match`` header matches ``etag`` (weak comparison, RFC 9110)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    for candidate in header.split(","):
        tag = candidate.strip()
        tag = tag.removeprefix("W/")
        if tag == etag:
            return True
    return False


# -- routes --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """A handler's JSON answer, rendered by its route's cache policy."""

    body: object
    status: int | None = None
    """None: the route's success status (:meth:`Route.status_of`)."""
    shared: bool = False
    """Under :attr:`Cache.SHARED`: the same for every signed-in user (a ready video)."""


Answer = Reply | web.StreamResponse
"""A handler answers a :class:`Reply`, or a response of its own (a file, text, a socket)."""
Handler = Callable[[web.Request], Awaitable[Answer]]
H = TypeVar("H", bound=Handler)

_PATH_REGEX = re.compile(r"{(\w+):[^{}]+}")


@dataclass(frozen=True)
class Route:
    """One method and path: who serves it, what it takes, what it answers, what is cached."""

    method: str
    path: str
    """The aiohttp template (``{name}`` or ``{name:regex}``)."""
    summary: str
    ok: Mapping[int, str | None]
    """Success statuses and their body schema (a component name; None: no JSON schema).
    A JSON answer (an op's, or a :class:`Reply` without a status) has the one status below
    300, or with both 200 and 201: 200 when the result is a ``duplicate``, else 201."""
    errors: tuple[int, ...]
    tag: str
    op: Operation[Any] | None = None
    """The op that serves the route; its params come from the path, the query and the body."""
    handler: Handler | None = None
    """What serves the route when it is not an op."""
    auth: bool = True
    params: type[Any] | None = None
    """The struct the params are documented from (default: the op's); path fields left out."""
    in_body: bool = False
    """The params' fields (but the path's) are a JSON object body; otherwise the query's."""
    fields: Mapping[str, Adjust] = field(default_factory=dict)
    """Changes to the documented schema of some params fields."""
    query: Mapping[str, Schema] = field(default_factory=dict)
    """Query parameters that are not fields of a struct."""
    path_params: Mapping[str, Schema] = field(default_factory=dict)
    form: Schema | None = None
    """A multipart/form-data request body (its schema), instead of a JSON one."""
    text: bool = False
    """The success body is text/plain."""
    cache: Cache = Cache.NO_STORE

    def __post_init__(self) -> None:
        if (self.op is None) == (self.handler is None):
            raise TypeError(f"{self.method} {self.path}: give an op or a handler")

    @property
    def doc_path(self) -> str:
        """The path as OpenAPI (and aiohttp's ``canonical``) write it: no regexes."""
        return _PATH_REGEX.sub(r"{\1}", self.path)

    @property
    def params_kind(self) -> type[Any] | None:
        return self.params if self.params is not None or self.op is None else self.op.params

    @property
    def responses(self) -> dict[int, str | None]:
        """Every status of a successful answer (``304`` with a validator)."""
        if self.cache is Cache.NO_STORE:
            return dict(self.ok)
        return {**self.ok, 304: None}

    def request_schema(self, settings: Settings) -> Schema | None:
        """The documented schema of the params struct, without the path's fields."""
        kind = self.params_kind
        if kind is None:
            return None
        schema = struct_schema(kind, drop=re.findall(r"{(\w+)}", self.doc_path))
        properties = schema["properties"]
        for name, adjust in self.fields.items():
            properties[name] = adjust(properties.get(name, {}), settings)
        return schema

    def status_of(self, body: object) -> int:
        statuses = sorted(status for status in self.ok if status < 300)
        if statuses == [200, 201]:
            assert isinstance(body, dict)
            return 200 if body["duplicate"] else 201
        (status,) = statuses
        return status

    async def respond(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler of the route."""
        if self.op is not None:
            answer: Answer = Reply(await call(request, self.op, body=self.in_body))
        else:
            assert self.handler is not None
            answer = await self.handler(request)
        if isinstance(answer, web.StreamResponse):
            return answer
        return self.render(request, answer)

    def render(self, request: web.Request, reply: Reply) -> web.Response:
        """A JSON answer with the route's caching rules, or 304 when the client has it."""
        status = self.status_of(reply.body) if reply.status is None else reply.status
        if self.cache is Cache.NO_STORE:
            return json_response(reply.body, status=status)
        payload = orjson.dumps(reply.body)
        control = "private, no-cache"
        if self.cache is Cache.SHARED and reply.shared:
            control = (
                f"public, max-age={max(0, int(request.app[SETTINGS].counts.video_cache_seconds))}"
            )
        headers = {"ETag": etag_of(payload), "Cache-Control": control}
        if etag_matches(request.headers.get("If-None-Match"), headers["ETag"]):
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=payload, status=status, content_type="application/json", headers=headers
        )


class RouteTable:
    """The routes of one domain, in the order they are mounted, and their answers' schemas."""

    def __init__(self, schemas: Mapping[str, Schema] | None = None, *, tag: str = "") -> None:
        self.tag = tag
        """The OpenAPI tag of a route that names none (a table of one domain has one)."""
        self.routes: list[Route] = []
        self.schemas: dict[str, Schema] = dict(schemas or {})
        """OpenAPI components: the shapes of the answers, by name."""

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes)

    def op(self, method: str, path: str, op: Operation[Any], summary: str, **kw: Any) -> None:
        """Declare a route served by an op (the same one the WebSocket calls)."""
        self.routes.append(Route(method, path, summary, op=op, **{"tag": self.tag, **kw}))

    def route(self, method: str, path: str, summary: str, **kw: Any) -> Callable[[H], H]:
        """Declare a route served by the decorated handler."""

        def wrap(handler: H) -> H:
            self.routes.append(
                Route(method, path, summary, handler=handler, **{"tag": self.tag, **kw})
            )
            return handler

        return wrap


def mount(router: web.UrlDispatcher, tables: Iterable[RouteTable]) -> None:
    """Add every route of the tables to the app (a GET answers HEAD too)."""
    for table in tables:
        for route in table.routes:
            if route.method == "GET":
                router.add_get(route.path, route.respond)
            else:
                router.add_route(route.method, route.path, route.respond)
