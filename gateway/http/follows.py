"""REST routes of follows, blocks, the home feed and re-shares; the same handlers as the ops.

The feed and the follow lists are per-user reads (``private, no-cache``): they answer with an
``ETag`` and ``304 Not Modified`` to a matching ``If-None-Match``, but no shared cache may keep
them.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from gateway.http.errors import json_response
from gateway.http.request import call, context, read_params
from gateway.http.social import etag_matches, etag_of
from handlers import follows

routes = web.RouteTableDef()


def private_read(request: web.Request, body: object) -> web.Response:
    payload = orjson.dumps(body)
    headers = {"ETag": etag_of(payload), "Cache-Control": "private, no-cache"}
    if etag_matches(request.headers.get("If-None-Match"), headers["ETag"]):
        return web.Response(status=304, headers=headers)
    return web.Response(body=payload, content_type="application/json", headers=headers)


@routes.put("/v1/users/{user_id}/follow")
async def follow(request: web.Request) -> web.Response:
    return json_response(await call(request, follows.follow))


@routes.delete("/v1/users/{user_id}/follow")
async def unfollow(request: web.Request) -> web.Response:
    return json_response(await call(request, follows.unfollow))


@routes.get("/v1/users/{user_id}/followers")
async def followers(request: web.Request) -> web.Response:
    return private_read(request, await call(request, follows.followers))


@routes.get("/v1/users/{user_id}/following")
async def following(request: web.Request) -> web.Response:
    return private_read(request, await call(request, follows.following))


@routes.get("/v1/users/{user_id}/follow-counts")
async def follow_counts(request: web.Request) -> web.Response:
    return json_response(await call(request, follows.follow_counts))


@routes.put("/v1/users/{user_id}/block")
async def block(request: web.Request) -> web.Response:
    return json_response(await call(request, follows.block))


@routes.delete("/v1/users/{user_id}/block")
async def unblock(request: web.Request) -> web.Response:
    return json_response(await call(request, follows.unblock))


@routes.get("/v1/feed")
async def feed(request: web.Request) -> web.Response:
    return private_read(request, await call(request, follows.feed))


@routes.post("/v1/videos/{video_id}/reshares")
async def reshare(request: web.Request) -> web.Response:
    ctx = context(request)
    params = await read_params(request, follows.ReshareParams)
    result = await follows.reshare(ctx, params)
    return json_response(result, status=200 if result["duplicate"] else 201)
