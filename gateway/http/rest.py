"""REST routes: the fallback for clients that cannot hold a WebSocket, plus accounts and groups.

Each route authenticates, builds the op's params from the path, query and body, and calls the
same handler the WebSocket calls, so rules and error codes are the same on both transports.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from gateway.http import openapi
from gateway.http.errors import json_response
from gateway.http.request import authenticate, call, check_country, context, read_body, read_params
from gateway.http.security import client_address, limit
from gateway.keys import HUB, METRICS, SERVICES, SETTINGS, STORE
from handlers import auth, chat, groups, receipts
from handlers.errors import NOT_FOUND, OpError

routes = web.RouteTableDef()


class PublishBody(msgspec.Struct, forbid_unknown_fields=False):
    data: msgspec.Raw
    client_msg_id: chat.ClientMsgId | None = None


# -- health --------------------------------------------------------------------------------


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    store_ok = await request.app[STORE].ping()
    broker_ok = await request.app[HUB].broker_ready()
    ready = store_ok and broker_ok
    body = {"status": "ready" if ready else "not_ready", "store": store_ok, "broker": broker_ok}
    return json_response(body, status=200 if ready else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=request.app[METRICS].render(), content_type="text/plain")


# -- accounts ------------------------------------------------------------------------------


@routes.post("/v1/auth/register")
async def register(request: web.Request) -> web.Response:
    check_country(request)
    await limit(request, "register", client_address(request))
    params = await read_body(request, auth.Credentials)
    return json_response(await auth.register(request.app[SERVICES], params), status=201)


@routes.post("/v1/auth/login")
async def login(request: web.Request) -> web.Response:
    check_country(request)
    # Before the password hash (the costly part): per address against credential stuffing,
    # per account against guessing one password from many addresses.
    await limit(request, "login", client_address(request))
    params = await read_body(request, auth.Credentials)
    await limit(request, "login_account", params.username)
    return json_response(await auth.login(request.app[SERVICES], params))


@routes.post("/v1/auth/refresh")
async def refresh(request: web.Request) -> web.Response:
    check_country(request)
    await limit(request, "refresh", client_address(request))
    params = await read_body(request, auth.RefreshParams)
    return json_response(await auth.refresh(request.app[SERVICES], params))


@routes.post("/v1/auth/logout")
async def logout(request: web.Request) -> web.Response:
    await limit(request, "logout", client_address(request))
    params = await read_body(request, auth.LogoutParams)
    identity = None if params.refresh_token is not None else authenticate(request)
    return json_response(await auth.logout(request.app[SERVICES], params, identity))


@routes.get("/v1/openapi.json")
async def openapi_document(request: web.Request) -> web.Response:
    body = openapi.document_bytes(request.app[SETTINGS])
    return web.Response(body=body, content_type="application/json")


@routes.get("/v1/me")
async def me(request: web.Request) -> web.Response:
    user_id = authenticate(request).user_id
    user = await request.app[STORE].get_user(user_id)
    return json_response({"user_id": user_id, "username": user.username if user else None})


@routes.get("/v1/users/by-username/{username}")
async def user_by_name(request: web.Request) -> web.Response:
    authenticate(request)
    username = request.match_info["username"]
    user = await request.app[STORE].get_user_by_username(username)
    if user is None:
        raise OpError(NOT_FOUND, f"no user named {username[:64]!r}")
    return json_response({"user_id": user.id, "username": user.username})


# -- channels ------------------------------------------------------------------------------


@routes.post("/v1/channels/{channel}/messages")
async def post_message(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await read_body(request, PublishBody)
    params = chat.PublishParams(
        channel=request.match_info["channel"], data=body.data, client_msg_id=body.client_msg_id
    )
    result = await chat.publish(ctx, params)
    return json_response(result, status=200 if result["duplicate"] else 201)


@routes.get("/v1/channels/{channel}/messages")
async def get_messages(request: web.Request) -> web.Response:
    return json_response(await call(request, chat.history))


@routes.get("/v1/channels/{channel}/events")
async def get_events(request: web.Request) -> web.Response:
    return json_response(await call(request, chat.events))


@routes.post("/v1/channels/{channel}/read")
async def post_read(request: web.Request) -> web.Response:
    return json_response(await call(request, receipts.read, body=True))


@routes.get("/v1/conversations")
async def get_conversations(request: web.Request) -> web.Response:
    return json_response(await call(request, receipts.conversations))


# -- groups --------------------------------------------------------------------------------


@routes.post("/v1/groups")
async def create_group(request: web.Request) -> web.Response:
    ctx = context(request)
    params = await read_params(request, groups.CreateGroupParams, body=True)
    return json_response(await groups.create_group(ctx, params), status=201)


@routes.get("/v1/groups/{group_id}")
async def get_group(request: web.Request) -> web.Response:
    return json_response(await call(request, groups.get_group))


@routes.post("/v1/groups/{group_id}/members")
async def add_member(request: web.Request) -> web.Response:
    return json_response(await call(request, groups.add_member, body=True))


@routes.delete("/v1/groups/{group_id}/members/{user_id}")
async def remove_member(request: web.Request) -> web.Response:
    return json_response(await call(request, groups.remove_member))
