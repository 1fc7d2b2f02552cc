"""The OpenAPI 3.1 document of every HTTP endpoint, served at ``GET /v1/openapi.json``.

Request bodies and parameters come from the same msgspec structs the routes decode with, so
their constraints cannot drift; limits that are settings (history page, long-poll wait) come
from the node's settings. Result shapes are written here and checked by the test suite against
live answers (schemathesis), and ``tests/unit/test_openapi.py`` checks that every route in the
app is in this document and nothing else is. A new route needs an entry in :data:`OPERATIONS`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from gateway.settings import Settings
from handlers import auth, channels, chat, groups, receipts
from handlers.errors import ALL_KINDS
from storage import ids

JSON = "application/json"
MAX_ID = 2**53 - 1


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _struct_schema(kind: type[Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
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


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
        "additionalProperties": False,
    }


STRING = {"type": "string"}
INTEGER = {"type": "integer"}
OFFSET = {"type": "integer", "minimum": 0, "maximum": MAX_ID}
NULLABLE_STRING = {"type": ["string", "null"]}
BOOLEAN = {"type": "boolean"}
STORE_ID = {
    "type": "string",
    # What `storage.ids.is_valid` accepts: an id the store made (a feed item's, a comment's).
    "pattern": f"^[{ids._ALPHABET}]{{{ids.ID_LENGTH}}}$",  # noqa: SLF001 - the one source
}


def _schemas() -> dict[str, Any]:
    from gateway.http import (  # they build on this module's pieces
        openapi_follows,
        openapi_media,
        openapi_social,
    )

    message = {
        "message_id": STRING,
        "offset": OFFSET,
        "from": STRING,
        "ts": INTEGER,
        "data": {"type": "object"},
    }
    event = {"op": {"const": "event"}, "channel": STRING, **message}
    return {
        "Error": {
            "type": "object",
            "properties": {
                "code": {"enum": sorted(kind.code for kind in ALL_KINDS)},
                "message": STRING,
                "retryable": BOOLEAN,
                "retry_after": {"type": "number", "exclusiveMinimum": 0},
            },
            "required": ["code", "message", "retryable"],
            "additionalProperties": False,
        },
        "TokenPair": _object(
            {
                "user_id": STRING,
                "username": STRING,
                "access_token": STRING,
                "token_type": {"const": "Bearer"},
                "expires_in": INTEGER,
                "refresh_token": STRING,
                "refresh_expires_in": INTEGER,
            }
        ),
        "User": _object({"user_id": STRING, "username": STRING}),
        "Me": _object({"user_id": STRING, "username": NULLABLE_STRING}),
        "LoggedOut": _object({"logged_out": {"const": True}}),
        "PublishResult": _object(
            {
                "channel": STRING,
                "message_id": STRING,
                "offset": OFFSET,
                "epoch": STRING,
                "ts": INTEGER,
                "duplicate": BOOLEAN,
            }
        ),
        "Message": _object(message, {"client_msg_id": STRING}),
        "HistoryPage": _object(
            {
                "channel": STRING,
                "messages": {"type": "array", "items": _ref("Message")},
                "next_before": NULLABLE_STRING,
            }
        ),
        "Event": _object(event, {"client_msg_id": STRING}),
        "EventsPage": _object(
            {
                "channel": STRING,
                "events": {"type": "array", "items": _ref("Event")},
                "next_since": OFFSET,
                "epoch": STRING,
            }
        ),
        "ReadResult": _object({"channel": STRING, "last_read": OFFSET, "unread": OFFSET}),
        "Conversation": _object(
            {
                "channel": STRING,
                "last_offset": OFFSET,
                "epoch": STRING,
                "last_ts": {"type": ["integer", "null"]},
                "last_read": OFFSET,
                "unread": OFFSET,
            },
            {"group_id": STRING, "name": NULLABLE_STRING, "peer": STRING},
        ),
        "ConversationPage": _object(
            {
                "conversations": {"type": "array", "items": _ref("Conversation")},
                "next_before": NULLABLE_STRING,
            }
        ),
        "Group": _object(
            {
                "group_id": STRING,
                "channel": STRING,
                "name": STRING,
                "owner": STRING,
                "created_at": INTEGER,
                "members": {"type": "array", "items": STRING},
            }
        ),
        "MemberAdded": _object({"group_id": STRING, "user_id": STRING, "added": BOOLEAN}),
        "MemberRemoved": _object({"group_id": STRING, "user_id": STRING, "removed": BOOLEAN}),
        "Health": _object({"status": {"const": "ok"}}),
        "Readiness": _object(
            {"status": {"enum": ["ready", "not_ready"]}, "store": BOOLEAN, "broker": BOOLEAN}
        ),
        **openapi_media.schemas(),
        **openapi_social.schemas(),
        **openapi_follows.schemas(),
    }


ERROR_TEXT = {
    400: "Bad request: `invalid_json`, `invalid_params`, `invalid_channel`, `invalid_frame`",
    401: "Not signed in: `unauthorized`, `token_expired`, `session_revoked` (and on the "
    "sign-in routes `invalid_credentials`, `invalid_refresh_token`)",
    403: "Refused: `forbidden`, `country_not_allowed`, `origin_not_allowed`",
    404: "`not_found`",
    409: "`username_taken`, `limit_exceeded`, `video_not_ready`",
    413: "`request_too_large`, `message_too_large`",
    415: "`unsupported_media_type`",
    426: "`Sec-WebSocket-Version` other than 13",
    429: "`rate_limited` (with `retry_after` and a `Retry-After` header), `too_many_connections`",
    503: "`unavailable` or `server_busy`: retry with backoff",
}


@dataclass(frozen=True)
class Endpoint:
    """One route: what it does, what it takes, what it answers."""

    method: str
    path: str
    summary: str
    ok: dict[int, str | None]
    """Success statuses and their body schema (a component name; None: no JSON schema)."""
    errors: tuple[int, ...]
    auth: bool = True
    body: dict[str, Any] | None = None
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    path_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    tag: str = "chat"
    text: bool = False
    """The success body is text/plain."""
    form: dict[str, Any] | None = None
    """A multipart/form-data request body (its schema), instead of a JSON one."""


CHANNEL_PARAM = {
    "channel": {
        "type": "string",
        "minLength": 1,
        "maxLength": channels.MAX_CHANNEL_LENGTH,
        "pattern": channels.CHANNEL_PATTERN,
        "description": "e.g. `room:lobby`, `dm:{a}:{b}`, `group:{id}` (see the protocol); a DM's "
        "two user ids are different and in sorted order (`a < b`), else `invalid_channel`",
    }
}
GROUP_PARAM = {"group_id": {"type": "string", "minLength": 1, "maxLength": 64}}
SIGNED_IN = (400, 401, 429, 503)


def endpoints(settings: Settings) -> list[Endpoint]:
    from gateway.http import (  # they build on this module's pieces
        openapi_follows,
        openapi_media,
        openapi_social,
    )

    publish_body = _struct_schema(chat.PublishParams, drop=("channel",))
    publish_body["properties"]["data"] = {
        "type": "object",
        "description": f"any JSON object, at most {settings.max_message_bytes} bytes as sent",
    }
    history = _struct_schema(chat.HistoryParams, drop=("channel",))["properties"]
    history["limit"] = {"type": "integer", "minimum": 1, "maximum": settings.history_max_limit}
    events = _struct_schema(chat.EventsParams, drop=("channel",))["properties"]
    events["timeout"] = {
        "type": "number",
        "minimum": 0,
        "description": f"seconds, at most {settings.longpoll_max_seconds:g} are waited",
    }
    create_group = _struct_schema(groups.CreateGroupParams)
    return [
        Endpoint("GET", "/healthz", "Liveness", {200: "Health"}, (), auth=False, tag="ops"),
        Endpoint(
            "GET",
            "/readyz",
            "Readiness: the store and the broker answer",
            {200: "Readiness", 503: "Readiness"},
            (),
            auth=False,
            tag="ops",
        ),
        Endpoint(
            "GET",
            "/metrics",
            "Prometheus metrics",
            {200: None},
            (),
            auth=False,
            tag="ops",
            text=True,
        ),
        Endpoint(
            "GET",
            "/v1/openapi.json",
            "This document",
            {200: None},
            (429,),
            auth=False,
            tag="ops",
        ),
        Endpoint(
            "GET",
            "/ws",
            "Open the WebSocket (an upgrade request; see docs/protocol.md)",
            {101: None},
            (400, 401, 403, 426, 429),
            tag="websocket",
            query={
                "token": {
                    "type": "string",
                    "description": "the access token, if not in the Authorization header",
                }
            },
        ),
        Endpoint(
            "POST",
            "/v1/auth/register",
            "Create an account and sign in",
            {201: "TokenPair"},
            (400, 403, 409, 413, 429, 503),
            auth=False,
            body=_struct_schema(auth.Credentials),
            tag="auth",
        ),
        Endpoint(
            "POST",
            "/v1/auth/login",
            "Sign in",
            {200: "TokenPair"},
            (400, 401, 403, 413, 429, 503),
            auth=False,
            body=_struct_schema(auth.Credentials),
            tag="auth",
        ),
        Endpoint(
            "POST",
            "/v1/auth/refresh",
            "Rotate a refresh token (single use; reuse revokes the session)",
            {200: "TokenPair"},
            (400, 401, 403, 413, 429, 503),
            auth=False,
            body=_struct_schema(auth.RefreshParams),
            tag="auth",
        ),
        Endpoint(
            "POST",
            "/v1/auth/logout",
            "End a session: the refresh token's if given, else the access token's (one "
            "without a session: 400 `invalid_params`)",
            {200: "LoggedOut"},
            (400, 401, 413, 429, 503),
            auth=False,
            body=_struct_schema(auth.LogoutParams),
            tag="auth",
        ),
        Endpoint("GET", "/v1/me", "Who am I", {200: "Me"}, SIGNED_IN, tag="users"),
        Endpoint(
            "GET",
            "/v1/users/by-username/{username}",
            "Find a user by name",
            {200: "User"},
            (*SIGNED_IN, 404),
            path_params={"username": {"type": "string", "minLength": 1}},
            tag="users",
        ),
        Endpoint(
            "POST",
            "/v1/channels/{channel}/messages",
            "Publish a message (`publish`)",
            {201: "PublishResult", 200: "PublishResult"},
            (*SIGNED_IN, 403, 413),
            body=publish_body,
            path_params=CHANNEL_PARAM,
        ),
        Endpoint(
            "GET",
            "/v1/channels/{channel}/messages",
            "History, newest first (`history`)",
            {200: "HistoryPage"},
            (*SIGNED_IN, 403, 404),
            query=history,
            path_params=CHANNEL_PARAM,
        ),
        Endpoint(
            "GET",
            "/v1/channels/{channel}/events",
            "Long poll: stored events after `since`",
            {200: "EventsPage"},
            (*SIGNED_IN, 403),
            query=events,
            path_params=CHANNEL_PARAM,
        ),
        Endpoint(
            "POST",
            "/v1/channels/{channel}/read",
            "Mark read up to an offset (`read`)",
            {200: "ReadResult"},
            (*SIGNED_IN, 403, 413),
            body=_struct_schema(receipts.ReadParams, drop=("channel",)),
            path_params=CHANNEL_PARAM,
        ),
        Endpoint(
            "GET",
            "/v1/conversations",
            "The caller's DMs and groups (`conversations`)",
            {200: "ConversationPage"},
            SIGNED_IN,
            query=_struct_schema(receipts.ConversationsParams)["properties"],
        ),
        Endpoint(
            "POST",
            "/v1/groups",
            "Create a group (`create_group`)",
            {201: "Group"},
            (*SIGNED_IN, 404, 409, 413),
            body=create_group,
            tag="groups",
        ),
        Endpoint(
            "GET",
            "/v1/groups/{group_id}",
            "A group, for its members (`get_group`)",
            {200: "Group"},
            (*SIGNED_IN, 404),
            path_params=GROUP_PARAM,
            tag="groups",
        ),
        Endpoint(
            "POST",
            "/v1/groups/{group_id}/members",
            "Add a member (`add_member`, owner only)",
            {200: "MemberAdded"},
            (*SIGNED_IN, 403, 404, 409, 413),
            body=_struct_schema(groups.AddMemberParams, drop=("group_id",)),
            path_params=GROUP_PARAM,
            tag="groups",
        ),
        Endpoint(
            "DELETE",
            "/v1/groups/{group_id}/members/{user_id}",
            "Remove a member, or leave (`remove_member`)",
            {200: "MemberRemoved"},
            (*SIGNED_IN, 403, 404),
            path_params={**GROUP_PARAM, "user_id": {"type": "string", "minLength": 1}},
            tag="groups",
        ),
        *openapi_media.endpoints(settings),
        *openapi_social.endpoints(settings),
        *openapi_follows.endpoints(settings),
    ]


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, schema in sorted(endpoint.ok.items()):
        answer: dict[str, Any] = {"description": "success" if status < 300 else "see schema"}
        if status == 101:
            answer["description"] = "Switching Protocols: the socket is open"
        elif status == 304:
            answer["description"] = "Not Modified: `If-None-Match` matched the `ETag`; no body"
        elif endpoint.text:
            answer["content"] = {"text/plain": {"schema": STRING}}
        elif schema is None:
            answer["content"] = {JSON: {"schema": {"type": "object"}}}
        else:
            answer["content"] = {JSON: {"schema": _ref(schema)}}
        responses[str(status)] = answer
    for status in sorted(set(endpoint.errors)):
        answer = {
            "description": ERROR_TEXT[status],
            "content": {JSON: {"schema": _ref("Error")}},
        }
        if status == 429:
            answer["headers"] = {
                "Retry-After": {
                    "description": "seconds to wait (`rate_limited` only)",
                    "schema": INTEGER,
                }
            }
        responses[str(status)] = answer
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": schema}
        for name, schema in endpoint.path_params.items()
    ] + [
        {"name": name, "in": "query", "required": False, "schema": _scalar(schema)}
        for name, schema in endpoint.query.items()
    ]
    operation: dict[str, Any] = {
        "summary": endpoint.summary,
        "operationId": f"{endpoint.method.lower()} {endpoint.path}",
        "tags": [endpoint.tag],
        "responses": responses,
    }
    if parameters:
        operation["parameters"] = parameters
    if endpoint.body is not None:
        # Required when the params struct has required fields (a missing body decodes as `{}`
        # and is refused with `invalid_params`); optional when every field has a default.
        operation["requestBody"] = {
            "required": bool(endpoint.body.get("required")),
            "content": {JSON: {"schema": {**endpoint.body, "type": "object"}}},
        }
    if endpoint.form is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"multipart/form-data": {"schema": endpoint.form}},
        }
    operation["security"] = [{"bearer": []}] if endpoint.auth else []
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
    for endpoint in endpoints(settings):
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
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
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


@functools.lru_cache(maxsize=8)
def document_bytes(settings: Settings) -> bytes:
    return orjson.dumps(document(settings))
