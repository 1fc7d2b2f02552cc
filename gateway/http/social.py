"""REST routes of videos, likes, comments and shares; the same handlers as the WebSocket ops.

Reads that many clients repeat (a video, a page of its comments) answer with an ``ETag`` and a
``Cache-Control`` and with ``304 Not Modified`` to a matching ``If-None-Match``, so a CDN or an
API cache in front can absorb a read storm. A ready video and its comments are the same for
every signed-in user, so they are ``public, max-age=MOOSIC_VIDEO_CACHE_SECONDS``; what only its
owner may see (a video still processing) is ``private, no-cache``.
"""

from __future__ import annotations

import hashlib

import orjson
from aiohttp import web

from gateway.http.errors import json_response
from gateway.http.request import call, context, read_params
from gateway.keys import SETTINGS
from handlers import social
from storage.videos import VideoStatus

routes = web.RouteTableDef()


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


def cacheable(request: web.Request, body: object, *, public: bool) -> web.Response:
    """Answer a read with its validator and caching rules, or 304 when the client has it."""
    payload = orjson.dumps(body)
    max_age = max(0, int(request.app[SETTINGS].video_cache_seconds))
    headers = {
        "ETag": etag_of(payload),
        "Cache-Control": f"public, max-age={max_age}" if public else "private, no-cache",
    }
    if etag_matches(request.headers.get("If-None-Match"), headers["ETag"]):
        return web.Response(status=304, headers=headers)
    return web.Response(body=payload, content_type="application/json", headers=headers)


@routes.post("/v1/videos")
async def create_video(request: web.Request) -> web.Response:
    ctx = context(request)
    params = await read_params(request, social.CreateVideoParams, body=True)
    return json_response(await social.create_video(ctx, params), status=201)


@routes.get("/v1/videos/{video_id}")
async def get_video(request: web.Request) -> web.Response:
    ctx = context(request)
    result = await social.get_video(ctx, await read_params(request, social.GetVideoParams))
    return cacheable(request, result, public=result["status"] == VideoStatus.READY.value)


@routes.get("/v1/videos/{video_id}/like")
async def like_status(request: web.Request) -> web.Response:
    return json_response(await call(request, social.like_status))


@routes.put("/v1/videos/{video_id}/like")
async def like(request: web.Request) -> web.Response:
    return json_response(await call(request, social.like))


@routes.delete("/v1/videos/{video_id}/like")
async def unlike(request: web.Request) -> web.Response:
    return json_response(await call(request, social.unlike))


@routes.get("/v1/videos/{video_id}/comments")
async def list_comments(request: web.Request) -> web.Response:
    ctx = context(request)
    params = await read_params(request, social.CommentsParams)
    result = await social.comments(ctx, params)
    video = await social.visible_video(ctx, params.video_id)  # the node's cache has it now
    return cacheable(request, result, public=video.status is VideoStatus.READY)


@routes.post("/v1/videos/{video_id}/comments")
async def add_comment(request: web.Request) -> web.Response:
    ctx = context(request)
    params = await read_params(request, social.CommentParams, body=True)
    result = await social.comment(ctx, params)
    return json_response(result, status=200 if result["duplicate"] else 201)


@routes.delete("/v1/videos/{video_id}/comments/{comment_id}")
async def delete_comment(request: web.Request) -> web.Response:
    return json_response(await call(request, social.delete_comment))


@routes.post("/v1/videos/{video_id}/shares")
async def share(request: web.Request) -> web.Response:
    ctx = context(request)
    params = await read_params(request, social.ShareParams, body=True)
    result = await social.share(ctx, params)
    return json_response(result, status=200 if result["duplicate"] else 201)
