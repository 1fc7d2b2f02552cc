"""REST routes: the fallback for clients that cannot hold a WebSocket, plus accounts and groups.

Each route is declared once in :data:`ROUTES` (see :mod:`gateway.http.routes`). Most are ops:
the route authenticates, builds the op's params from the path, query and body, and calls the
same handler the WebSocket calls, so rules and error codes are the same on both transports.
The WebSocket upgrade (``GET /ws``) is declared here too, so it is in the route table and the
document like any other.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from gateway.clickstream.service import CLICKSTREAM
from gateway.guard.edge import authenticate, check_country, client_address, limit
from gateway.http.request import context, read_body
from gateway.http.routes import (
    BOOLEAN,
    INTEGER,
    NULLABLE_STRING,
    OFFSET,
    SIGNED_IN,
    STRING,
    Reply,
    RouteTable,
    Schema,
    obj,
    ref,
)
from gateway.http.server import EVENTS_PATH
from gateway.keys import HUB, METRICS_REGISTRY, SERVICES, STORE
from gateway.metrics import exposition
from gateway.settings import Settings
from gateway.ws.upgrade import websocket
from handlers import auth, channels, chat, events, groups, receipts, recovery

_MESSAGE: Schema = {
    "message_id": STRING,
    "offset": OFFSET,
    "from": STRING,
    "ts": INTEGER,
    "data": {"type": "object"},
}
_EVENT: Schema = {"op": {"const": "event"}, "channel": STRING, **_MESSAGE}

ROUTES = RouteTable(
    {
        "TokenPair": obj(
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
        "User": obj({"user_id": STRING, "username": STRING}),
        "Me": obj({"user_id": STRING, "username": NULLABLE_STRING}),
        "LoggedOut": obj({"logged_out": {"const": True}}),
        "EmailSet": obj({"email": STRING, "verified": BOOLEAN, "verification_sent": BOOLEAN}),
        "EmailVerified": obj({"user_id": STRING, "email": STRING, "verified": {"const": True}}),
        "ResetAccepted": obj({"accepted": {"const": True}, "detail": STRING}),
        "PasswordReset": obj({"password_reset": {"const": True}, "sessions_ended": INTEGER}),
        "PublishResult": obj(
            {
                "channel": STRING,
                "message_id": STRING,
                "offset": OFFSET,
                "epoch": STRING,
                "ts": INTEGER,
                "duplicate": BOOLEAN,
            }
        ),
        "Message": obj(_MESSAGE, {"client_msg_id": STRING}),
        "HistoryPage": obj(
            {
                "channel": STRING,
                "messages": {"type": "array", "items": ref("Message")},
                "next_before": NULLABLE_STRING,
            }
        ),
        "Event": obj(_EVENT, {"client_msg_id": STRING}),
        "EventsPage": obj(
            {
                "channel": STRING,
                "events": {"type": "array", "items": ref("Event")},
                "next_since": OFFSET,
                "epoch": STRING,
            }
        ),
        "ReadResult": obj({"channel": STRING, "last_read": OFFSET, "unread": OFFSET}),
        "Conversation": obj(
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
        "ConversationPage": obj(
            {
                "conversations": {"type": "array", "items": ref("Conversation")},
                "next_before": NULLABLE_STRING,
            }
        ),
        "Group": obj(
            {
                "group_id": STRING,
                "channel": STRING,
                "name": STRING,
                "owner": STRING,
                "created_at": INTEGER,
                "members": {"type": "array", "items": STRING},
            }
        ),
        "MemberAdded": obj({"group_id": STRING, "user_id": STRING, "added": BOOLEAN}),
        "MemberRemoved": obj({"group_id": STRING, "user_id": STRING, "removed": BOOLEAN}),
        "Health": obj({"status": {"const": "ok"}}),
        "EventsResult": obj(
            {
                "accepted": INTEGER,
                "duplicates": INTEGER,
                "refused": {
                    "type": "array",
                    "items": obj(
                        {
                            "index": INTEGER,
                            "code": STRING,
                            "message": STRING,
                            "retryable": BOOLEAN,
                        },
                        {"event_id": STRING},
                    ),
                },
            }
        ),
        "Readiness": obj(
            {"status": {"enum": ["ready", "not_ready"]}, "store": BOOLEAN, "broker": BOOLEAN}
        ),
    }
)

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
AUTH_ERRORS = (400, 401, 403, 413, 429, 503)


class PublishBody(msgspec.Struct, forbid_unknown_fields=False):
    data: msgspec.Raw
    client_msg_id: chat.ClientMsgId | None = None


def _message_data(schema: Schema, settings: Settings) -> Schema:
    return {
        "type": "object",
        "description": f"any JSON object, at most {settings.chat.max_message_bytes} bytes as sent",
    }


def _email(schema: Schema, settings: Settings) -> Schema:
    return {
        "type": "string",
        "maxLength": recovery.MAX_EMAIL_LENGTH,
        "pattern": recovery.EMAIL_PATTERN,
        "not": {"pattern": "\\.\\."},
        "description": "an email address (docs/protocol.md: the rule); no two dots in a row",
    }


def _history_limit(schema: Schema, settings: Settings) -> Schema:
    return {"type": "integer", "minimum": 1, "maximum": settings.chat.history_max_limit}


def _poll_timeout(schema: Schema, settings: Settings) -> Schema:
    return {
        "type": "number",
        "minimum": 0,
        "description": f"seconds, at most {settings.http.longpoll_max_seconds:g} are waited",
    }


# -- the WebSocket upgrade -----------------------------------------------------------------

ROUTES.route(
    "GET",
    "/ws",
    "Open the WebSocket (an upgrade request; see docs/protocol.md)",
    ok={101: None},
    errors=(400, 401, 403, 426, 429),
    tag="websocket",
    query={
        "token": {
            "type": "string",
            "description": "the access token, if not in the Authorization header",
        }
    },
)(websocket)


# -- health --------------------------------------------------------------------------------


@ROUTES.route("GET", "/healthz", "Liveness", ok={200: "Health"}, errors=(), auth=False, tag="ops")
async def healthz(request: web.Request) -> Reply:
    return Reply({"status": "ok"})


@ROUTES.route(
    "GET",
    "/readyz",
    "Readiness: the store and the broker answer",
    ok={200: "Readiness", 503: "Readiness"},
    errors=(),
    auth=False,
    tag="ops",
)
async def readyz(request: web.Request) -> Reply:
    store_ok = await request.app[STORE].ping()
    broker_ok = await request.app[HUB].broker_ready()
    ready = store_ok and broker_ok
    body = {"status": "ready" if ready else "not_ready", "store": store_ok, "broker": broker_ok}
    return Reply(body, status=200 if ready else 503)


@ROUTES.route(
    "GET",
    "/metrics",
    "Prometheus metrics",
    ok={200: None},
    errors=(),
    auth=False,
    tag="ops",
    text=True,
)
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text, or OpenMetrics when the scrape's ``Accept`` asks for it."""
    body, content_type = exposition(request.app[METRICS_REGISTRY], request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


# -- accounts ------------------------------------------------------------------------------


@ROUTES.route(
    "POST",
    "/v1/auth/register",
    "Create an account and sign in",
    ok={201: "TokenPair"},
    errors=(400, 403, 409, 413, 429, 503),
    auth=False,
    params=auth.Credentials,
    in_body=True,
    tag="auth",
)
async def register(request: web.Request) -> Reply:
    check_country(request)
    await limit(request, "register", client_address(request))
    params = await read_body(request, auth.Credentials)
    return Reply(await auth.register(request.app[SERVICES], params))


@ROUTES.route(
    "POST",
    "/v1/auth/login",
    "Sign in",
    ok={200: "TokenPair"},
    errors=AUTH_ERRORS,
    auth=False,
    params=auth.Credentials,
    in_body=True,
    tag="auth",
)
async def login(request: web.Request) -> Reply:
    check_country(request)
    # Before the password hash (the costly part): per address against credential stuffing,
    # per account against guessing one password from many addresses.
    await limit(request, "login", client_address(request))
    params = await read_body(request, auth.Credentials)
    await limit(request, "login_account", params.username)
    return Reply(await auth.login(request.app[SERVICES], params))


@ROUTES.route(
    "POST",
    "/v1/auth/refresh",
    "Rotate a refresh token (single use; reuse revokes the session)",
    ok={200: "TokenPair"},
    errors=AUTH_ERRORS,
    auth=False,
    params=auth.RefreshParams,
    in_body=True,
    tag="auth",
)
async def refresh(request: web.Request) -> Reply:
    check_country(request)
    await limit(request, "refresh", client_address(request))
    params = await read_body(request, auth.RefreshParams)
    return Reply(await auth.refresh(request.app[SERVICES], params))


@ROUTES.route(
    "POST",
    "/v1/auth/logout",
    "End a session: the refresh token's if given, else the access token's (one "
    "without a session: 400 `invalid_params`)",
    ok={200: "LoggedOut"},
    errors=(400, 401, 413, 429, 503),
    auth=False,
    params=auth.LogoutParams,
    in_body=True,
    tag="auth",
)
async def logout(request: web.Request) -> Reply:
    await limit(request, "logout", client_address(request))
    params = await read_body(request, auth.LogoutParams)
    identity = None if params.refresh_token is not None else authenticate(request)
    return Reply(await auth.logout(request.app[SERVICES], params, identity))


@ROUTES.route(
    "POST",
    "/v1/account/email",
    "Set the account's email address (unverified) and mail it a verification token",
    ok={202: "EmailSet"},
    errors=(*SIGNED_IN, 409, 413),
    params=recovery.EmailParams,
    in_body=True,
    fields={"email": _email},
    tag="auth",
)
async def set_email(request: web.Request) -> Reply:
    user_id = authenticate(request).user_id
    await limit(request, "email_change", user_id)
    params = await read_body(request, recovery.EmailParams)
    email = recovery.normalise_email(params.email)
    await limit(request, "mail_address", recovery.address_subject(email))
    return Reply(await recovery.set_email(request.app[SERVICES], params, user_id))


@ROUTES.route(
    "POST",
    "/v1/account/email/verify",
    "Verify the account's email address with the mailed token (no access token needed)",
    ok={200: "EmailVerified"},
    errors=(400, 401, 409, 410, 413, 429, 503),
    auth=False,
    params=recovery.TokenParams,
    in_body=True,
    tag="auth",
)
async def verify_email(request: web.Request) -> Reply:
    await limit(request, "email_verify", client_address(request))
    params = await read_body(request, recovery.TokenParams)
    return Reply(await recovery.verify_email(request.app[SERVICES], params))


@ROUTES.route(
    "POST",
    "/v1/auth/password-reset",
    "Ask for a password reset mail; the same answer whether or not the address has an account",
    ok={202: "ResetAccepted"},
    errors=(400, 403, 413, 429, 503),
    auth=False,
    params=recovery.EmailParams,
    in_body=True,
    fields={"email": _email},
    tag="auth",
)
async def password_reset(request: web.Request) -> Reply:
    check_country(request)
    await limit(request, "password_reset", client_address(request))
    params = await read_body(request, recovery.EmailParams)
    email = recovery.normalise_email(params.email)
    await limit(request, "mail_address", recovery.address_subject(email))
    return Reply(await recovery.request_password_reset(request.app[SERVICES], params), status=202)


@ROUTES.route(
    "POST",
    "/v1/auth/password-reset/confirm",
    "Set a new password with a mailed reset token; ends every session of the account",
    ok={200: "PasswordReset"},
    errors=(400, 401, 403, 410, 413, 429, 503),
    auth=False,
    params=recovery.ResetConfirmParams,
    in_body=True,
    tag="auth",
)
async def password_reset_confirm(request: web.Request) -> Reply:
    check_country(request)
    await limit(request, "password_reset_confirm", client_address(request))
    params = await read_body(request, recovery.ResetConfirmParams)
    return Reply(await recovery.confirm_password_reset(request.app[SERVICES], params))


ROUTES.op("GET", "/v1/me", auth.me, "Who am I", ok={200: "Me"}, errors=SIGNED_IN, tag="users")
ROUTES.op(
    "GET",
    "/v1/users/by-username/{username}",
    auth.user_by_username,
    "Find a user by name",
    ok={200: "User"},
    errors=(*SIGNED_IN, 404),
    path_params={"username": {"type": "string", "minLength": 1}},
    tag="users",
)


# -- channels ------------------------------------------------------------------------------


@ROUTES.route(
    "POST",
    "/v1/channels/{channel}/messages",
    "Publish a message (`publish`)",
    ok={201: "PublishResult", 200: "PublishResult"},
    errors=(*SIGNED_IN, 403, 413),
    params=chat.PublishParams,
    in_body=True,
    fields={"data": _message_data},
    path_params=CHANNEL_PARAM,
    tag="chat",
)
async def post_message(request: web.Request) -> Reply:
    ctx = context(request)
    body = await read_body(request, PublishBody)  # `data` is kept as sent (msgspec.Raw)
    params = chat.PublishParams(
        channel=request.match_info["channel"], data=body.data, client_msg_id=body.client_msg_id
    )
    return Reply(await chat.publish(ctx, params))


ROUTES.op(
    "GET",
    "/v1/channels/{channel}/messages",
    chat.history,
    "History, newest first (`history`)",
    ok={200: "HistoryPage"},
    errors=(*SIGNED_IN, 403, 404),
    fields={"limit": _history_limit},
    path_params=CHANNEL_PARAM,
    tag="chat",
)
ROUTES.op(
    "GET",
    "/v1/channels/{channel}/events",
    chat.events,
    "Long poll: stored events after `since`",
    ok={200: "EventsPage"},
    errors=(*SIGNED_IN, 403),
    fields={"timeout": _poll_timeout},
    path_params=CHANNEL_PARAM,
    tag="chat",
)
ROUTES.op(
    "POST",
    "/v1/channels/{channel}/read",
    receipts.read,
    "Mark read up to an offset (`read`)",
    ok={200: "ReadResult"},
    errors=(*SIGNED_IN, 403, 413),
    in_body=True,
    path_params=CHANNEL_PARAM,
    tag="chat",
)
ROUTES.op(
    "GET",
    "/v1/conversations",
    receipts.conversations,
    "The caller's DMs and groups (`conversations`)",
    ok={200: "ConversationPage"},
    errors=SIGNED_IN,
    tag="chat",
)


# -- groups --------------------------------------------------------------------------------

ROUTES.op(
    "POST",
    "/v1/groups",
    groups.create_group,
    "Create a group (`create_group`)",
    ok={201: "Group"},
    errors=(*SIGNED_IN, 404, 409, 413),
    in_body=True,
    tag="groups",
)
ROUTES.op(
    "GET",
    "/v1/groups/{group_id}",
    groups.get_group,
    "A group, for its members (`get_group`)",
    ok={200: "Group"},
    errors=(*SIGNED_IN, 404),
    path_params=GROUP_PARAM,
    tag="groups",
)
ROUTES.op(
    "POST",
    "/v1/groups/{group_id}/members",
    groups.add_member,
    "Add a member (`add_member`, owner only)",
    ok={200: "MemberAdded"},
    errors=(*SIGNED_IN, 403, 404, 409, 413),
    in_body=True,
    path_params=GROUP_PARAM,
    tag="groups",
)
ROUTES.op(
    "DELETE",
    "/v1/groups/{group_id}/members/{user_id}",
    groups.remove_member,
    "Remove a member, or leave (`remove_member`)",
    ok={200: "MemberRemoved"},
    errors=(*SIGNED_IN, 403, 404),
    path_params={**GROUP_PARAM, "user_id": {"type": "string", "minLength": 1}},
    tag="groups",
)


# -- clickstream ---------------------------------------------------------------------------


@ROUTES.route(
    "POST",
    EVENTS_PATH,
    "Clickstream events, a batch of up to 500 (`track`); the items refused are named, the rest "
    "taken (body at most 1 MiB)",
    ok={200: "EventsResult"},
    errors=(*SIGNED_IN, 403, 413),
    params=events.EventsBody,
    in_body=True,
    tag="events",
)
async def post_events(request: web.Request) -> Reply:
    country = check_country(request)
    user_id = authenticate(request).user_id
    await limit(request, "track", user_id)
    body = await read_body(request.clone(client_max_size=events.MAX_BODY_BYTES), events.EventsBody)
    intake = request.app[CLICKSTREAM].intake
    return Reply(intake.take(user_id, country, [bytes(raw) for raw in body.events]))
