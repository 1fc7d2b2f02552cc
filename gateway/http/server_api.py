"""The server API: calls for trusted back ends under ``/server/v1``, and the admin page.

Authenticated by an API key of ``MOOSIC_SERVER_API_KEYS`` (:mod:`gateway.auth.api_keys`) in
``Authorization: Bearer <key>`` or ``X-Api-Key``; a missing or wrong key is 401
``invalid_api_key``. With no key configured the whole prefix answers 404. With
``MOOSIC_SERVER_API_PORT`` the prefix is served on that port only (and that port serves nothing
else); without it, on the public port.

Every call is audited: one line on the ``gateway.audit`` logger (written at INFO whatever
``MOOSIC_LOG_LEVEL`` says) naming the key by its position and fingerprint, never the key, the
action, and the ids it acted on.

The calls reuse the handlers the rest of the gateway uses: a publish as ``system`` is stored and
fanned out as any ``publish`` (:func:`handlers.chat.post`); ending a user's sessions is
``logout`` for each of them (:func:`handlers.auth.end_all_sessions`, as a password reset does) plus a disconnect with
4501 on every node; a moderation decision is recorded through the media ledger
(:func:`handlers.media.decide`). Documented in docs/operations.md, "Server API".
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Annotated, Any

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.auth.api_keys import ApiKeys, presented_key
from gateway.http.errors import json_response
from gateway.http.request import read_body
from gateway.http.server import BROADCAST_MAX_BODY_BYTES, BROADCAST_PATH, GatewayRequestHandler
from gateway.keys import HOME_LINKS, HUB, METRICS, METRICS_REGISTRY, SERVICES, SETTINGS, STORE
from gateway.metrics import exposition
from gateway.ws.connection import Connection
from gateway.ws.frames import CloseCode
from handlers import auth, chat
from handlers import media as media_ops
from handlers.channels import ID_PATTERN, is_user_id, parse_channel
from handlers.errors import INVALID_API_KEY, INVALID_PARAMS, NOT_FOUND, OpError, as_op_error
from handlers.presence import PRESENCE_LIST_LIMIT

log = logging.getLogger(__name__)
audit_log = logging.getLogger("gateway.audit")
audit_log.setLevel(logging.INFO)  # audit lines are kept whatever the log level

PREFIX = "/server/v1"
ADMIN_DIR = Path(__file__).resolve().parent / "admin"
ADMIN_FILES = {
    "index.html": "text/html; charset=utf-8",
    "admin.js": "text/javascript; charset=utf-8",
    "admin.css": "text/css; charset=utf-8",
}
ADMIN_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The admin page's policy: its own script and style, ``fetch`` to this origin, nothing else."""

MAX_BROADCAST_CHANNELS = 1000
BROADCAST_CONCURRENCY = 32
"""Channels of one broadcast stored and fanned out at the same time."""
MAX_LIST = 1000
"""Connections or channels one node listing returns at most."""
MAX_REASON = 100
"""Characters of a disconnect reason (it goes into the close frame, at most 123 bytes)."""

API_KEYS = web.AppKey("server_api_keys", ApiKeys)

routes = web.RouteTableDef()

UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Reason = Annotated[str, msgspec.Meta(max_length=MAX_REASON, pattern=r"^[\x20-\x7e]*$")]
ChannelList = Annotated[
    list[chat.Channel], msgspec.Meta(min_length=1, max_length=MAX_BROADCAST_CHANNELS)
]


class PublishBody(msgspec.Struct, forbid_unknown_fields=True):
    channel: chat.Channel
    data: msgspec.Raw
    client_msg_id: chat.ClientMsgId | None = None


class BroadcastBody(msgspec.Struct, forbid_unknown_fields=True):
    channels: ChannelList
    data: msgspec.Raw
    client_msg_id: chat.ClientMsgId | None = None


class RegionPublishBody(msgspec.Struct, forbid_unknown_fields=True):
    channel: chat.Channel
    sender: Annotated[str, msgspec.Meta(pattern=f"^{ID_PATTERN}$")]
    data: msgspec.Raw
    client_msg_id: chat.ClientMsgId | None = None


class DisconnectBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason = "disconnected by the server"


class ModerationBody(msgspec.Struct, forbid_unknown_fields=True):
    decision: Annotated[str, msgspec.Meta(pattern="^(approve|reject)$")]
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None


# -- where the prefix is served, and who may call it ------------------------------------------


def _local_port(request: web.Request) -> int | None:
    transport = request.transport
    name = transport.get_extra_info("sockname") if transport is not None else None
    return int(name[1]) if isinstance(name, tuple) and len(name) >= 2 else None


@web.middleware
async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The prefix only where it is served (and served at all); the private port serves it only."""
    settings = request.app[SETTINGS]
    ours = request.path == PREFIX or request.path.startswith(PREFIX + "/")
    private = settings.http.server_api_port
    on_private = private is not None and _local_port(request) == private
    if ours and (not settings.http.server_api_keys or (private is not None and not on_private)):
        raise OpError(NOT_FOUND, "not found")
    if on_private and not ours:
        raise OpError(NOT_FOUND, "this port serves only the server API")
    return await handler(request)


def caller(request: web.Request) -> int:
    """The index of the API key the request presents; 401 ``invalid_api_key`` otherwise."""
    presented = presented_key(
        request.headers.get("Authorization"), request.headers.get("X-Api-Key")
    )
    index = request.app[API_KEYS].match(presented)
    if index is None:
        audit_log.warning(
            "server api: refused %s %s from %s (%s API key)",
            request.method,
            request.path,
            request.remote,
            "no" if presented is None else "a wrong",
        )
        raise OpError(INVALID_API_KEY, "a valid API key is required (Authorization: Bearer)")
    protocol = request.protocol
    if isinstance(protocol, GatewayRequestHandler):
        protocol.signed_in()  # a back end's keep-alive connection is not an idle stranger's
    return index


def audit(request: web.Request, index: int, action: str, **ids: object) -> None:
    """One line per call: which key (position and fingerprint), what, on which ids."""
    fingerprint = request.app[API_KEYS].fingerprints[index]
    shown = " ".join(f"{name}={value}" for name, value in ids.items())
    audit_log.info(
        "server api: key #%d (%s) from %s: %s %s", index, fingerprint, request.remote, action, shown
    )


def _user(request: web.Request) -> str:
    user_id = request.match_info["user_id"]
    if not is_user_id(user_id):
        raise OpError(INVALID_PARAMS, "not a user id - at `user_id`")
    return user_id


def _limit(request: web.Request, default: int, maximum: int) -> int:
    text = request.query.get("limit")
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise OpError(INVALID_PARAMS, "limit must be a whole number - at `limit`") from None
    if not 1 <= value <= maximum:
        raise OpError(INVALID_PARAMS, f"limit must be between 1 and {maximum} - at `limit`")
    return value


# -- chat ------------------------------------------------------------------------------------


@routes.post(PREFIX + "/publish")
async def publish(request: web.Request) -> web.Response:
    index = caller(request)
    body = await read_body(request, PublishBody)
    channel = parse_channel(body.channel)
    services = request.app[SERVICES]
    data = chat.message_body(body.data, services.limits.max_message_bytes)
    audit(request, index, "publish", channel=channel.name)
    result = await chat.post_at_home(
        services, channel, media_ops.NOTIFIER, data, body.client_msg_id
    )
    return json_response(result, status=200 if result["duplicate"] else 201)


@routes.post(BROADCAST_PATH)
async def broadcast(request: web.Request) -> web.Response:
    index = caller(request)
    body = await read_body(request.clone(client_max_size=BROADCAST_MAX_BODY_BYTES), BroadcastBody)
    if len(set(body.channels)) != len(body.channels):
        raise OpError(INVALID_PARAMS, "a channel is listed twice - at `channels`")
    services = request.app[SERVICES]
    data = chat.message_body(body.data, services.limits.max_message_bytes)
    audit(request, index, "broadcast", channels=len(body.channels))
    room = asyncio.Semaphore(BROADCAST_CONCURRENCY)

    async def one(name: str) -> dict[str, Any]:
        try:
            channel = parse_channel(name)
            async with room:
                result = await chat.post_at_home(
                    services, channel, media_ops.NOTIFIER, data, body.client_msg_id
                )
        except Exception as exc:
            error = as_op_error(exc)
            if error is None:
                log.exception("broadcast to %s failed", name)
                request.app[METRICS].internal_errors += 1
                return {"channel": name, "error": _internal()}
            return {"channel": name, "error": error.to_dict()}
        return result

    results = await asyncio.gather(*(one(name) for name in body.channels))
    failed = sum(1 for result in results if "error" in result)
    return json_response({"published": len(results) - failed, "failed": failed, "results": results})


def _internal() -> dict[str, object]:
    return {"code": "internal_error", "message": "internal error", "retryable": True}


@routes.get(PREFIX + "/channels/{channel}/presence")
async def presence(request: web.Request) -> web.Response:
    index = caller(request)
    channel = parse_channel(request.match_info["channel"])
    limit = _limit(request, PRESENCE_LIST_LIMIT, PRESENCE_LIST_LIMIT)
    audit(request, index, "presence", channel=channel.name)
    users, count = await request.app[SERVICES].presence.here(channel.name, limit)
    return json_response({"channel": channel.name, "users": users, "count": count})


@routes.get(PREFIX + "/channels/{channel}/messages")
async def history(request: web.Request) -> web.Response:
    index = caller(request)
    channel = parse_channel(request.match_info["channel"])
    services = request.app[SERVICES]
    maximum = services.limits.history_max_limit
    limit = _limit(request, min(50, maximum), maximum)
    before = request.query.get("before") or None
    if before is not None and len(before) > 64:
        raise OpError(INVALID_PARAMS, "before is a message id - at `before`")
    audit(request, index, "history", channel=channel.name)
    return json_response(await chat.history_page(services, channel.name, limit, before))


# -- regions (docs/regions.md) ----------------------------------------------------------------


@routes.post(PREFIX + "/regions/publish")
async def region_publish(request: web.Request) -> web.Response:
    """A publish another region forwarded to this one, the channel's home: stored here."""
    index = caller(request)
    body = await read_body(request, RegionPublishBody)
    channel = parse_channel(body.channel)
    services = request.app[SERVICES]
    plan = services.regions
    if plan is None or plan.home(channel) != plan.local:
        raise OpError(INVALID_PARAMS, f"this region is not the home of {channel.name}")
    data = chat.message_body(body.data, services.limits.max_message_bytes)
    audit(request, index, "region_publish", channel=channel.name, sender=body.sender)
    result = await chat.post(services, channel.name, body.sender, data, body.client_msg_id)
    return json_response(result, status=200 if result["duplicate"] else 201)


@routes.get(PREFIX + "/regions/link")
async def region_link(request: web.Request) -> web.StreamResponse:
    """Another region's relay follows channels homed here (gateway/regions/home.py)."""
    index = caller(request)
    if HOME_LINKS not in request.app:
        raise OpError(NOT_FOUND, "this gateway has no regions (MOOSIC_REGIONS)")
    audit(request, index, "region_link")
    app = request.app
    return await app[HOME_LINKS].serve(request, app[SERVICES], app[HUB])


# -- users -----------------------------------------------------------------------------------


@routes.post(PREFIX + "/users/{user_id}/disconnect")
async def disconnect(request: web.Request) -> web.Response:
    index = caller(request)
    user_id = _user(request)
    body = await read_body(request, DisconnectBody)
    audit(request, index, "disconnect", user_id=user_id)
    await request.app[HUB].disconnect(user_id, CloseCode.DISCONNECTED, body.reason)
    return json_response({"user_id": user_id, "close_code": int(CloseCode.DISCONNECTED)})


@routes.post(PREFIX + "/users/{user_id}/end-sessions")
async def end_sessions(request: web.Request) -> web.Response:
    index = caller(request)
    user_id = _user(request)
    audit(request, index, "end_sessions", user_id=user_id)
    ended = await auth.end_all_sessions(request.app[SERVICES], user_id)
    # Sockets whose session has no stored refresh token (an identity provider's) close too.
    await request.app[HUB].disconnect(
        user_id, CloseCode.SESSION_REVOKED, "session revoked: sign in again"
    )
    return json_response({"user_id": user_id, "sessions_ended": ended})


# -- this node -------------------------------------------------------------------------------


@routes.get(PREFIX + "/nodes")
async def nodes(request: web.Request) -> web.Response:
    index = caller(request)
    audit(request, index, "nodes")
    tracker = request.app[HUB].presence
    found = [] if tracker is None else await tracker.backend.nodes()
    return json_response({"count": len(found), "nodes": found})


@routes.get(PREFIX + "/node/connections")
async def connections(request: web.Request) -> web.Response:
    index = caller(request)
    limit = _limit(request, 100, MAX_LIST)
    audit(request, index, "connections")
    members = request.app[HUB].all_members()
    listed = []
    for member in members[:limit]:
        entry: dict[str, object] = {"user_id": member.user_id}
        if isinstance(member, Connection):
            entry["subscriptions"] = member.subscription_count
        entry["buffered_bytes"] = member.buffered_bytes()
        listed.append(entry)
    return json_response({"count": len(members), "connections": listed})


@routes.get(PREFIX + "/node/channels")
async def channels(request: web.Request) -> web.Response:
    index = caller(request)
    limit = _limit(request, 100, MAX_LIST)
    audit(request, index, "channels")
    hub = request.app[HUB]
    listed = [
        {"channel": name, "subscribers": count} for name, count in hub.channels_snapshot(limit)
    ]
    return json_response({"count": hub.channel_count, "channels": listed})


@routes.get(PREFIX + "/metrics")
async def metrics(request: web.Request) -> web.Response:
    index = caller(request)
    audit(request, index, "metrics")
    body, content_type = exposition(request.app[METRICS_REGISTRY], request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


# -- moderation ------------------------------------------------------------------------------


@routes.get(PREFIX + "/videos/held")
async def held(request: web.Request) -> web.Response:
    index = caller(request)
    limit = _limit(request, 50, 100)
    before = request.query.get("before") or None
    if before is not None and len(before) > 64:
        raise OpError(INVALID_PARAMS, "before is a queue entry id - at `before`")
    audit(request, index, "held_videos")
    return json_response(await media_ops.held_videos(request.app[STORE], limit, before))


@routes.post(PREFIX + "/videos/{video_id}/moderation")
async def moderation(request: web.Request) -> web.Response:
    index = caller(request)
    video_id = request.match_info["video_id"]
    if re.fullmatch(ID_PATTERN, video_id) is None:
        raise OpError(INVALID_PARAMS, "not a video id - at `video_id`")
    body = await read_body(request, ModerationBody)
    audit(request, index, "moderation", video_id=video_id, decision=body.decision)
    services = request.app[SERVICES]
    ledger = media_ops.StoreLedger(
        services.store, services.fanout, services.feeds, services.notifier
    )
    result = await media_ops.decide(
        services.store, ledger, video_id, body.decision == "approve", body.reason
    )
    return json_response(result)


# -- the admin page ----------------------------------------------------------------------------


@routes.get(PREFIX + "/admin")
async def admin_root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(PREFIX + "/admin/")


@routes.get(PREFIX + "/admin/")
async def admin_index(request: web.Request) -> web.StreamResponse:
    return _admin_file("index.html")


@routes.get(PREFIX + "/admin/{name}")
async def admin_file(request: web.Request) -> web.StreamResponse:
    return _admin_file(request.match_info["name"])


def _admin_file(name: str) -> web.FileResponse:
    """A file of the admin page: static, no data in it (the data needs the key)."""
    content_type = ADMIN_FILES.get(name)
    if content_type is None:
        raise OpError(NOT_FOUND, "no such file")
    headers = {
        "Content-Type": content_type,
        "Content-Security-Policy": ADMIN_CSP,
        "Cache-Control": "no-cache",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }
    return web.FileResponse(ADMIN_DIR / name, headers=headers)


def pages() -> set[tuple[str, str]]:
    """(method, path) of every route here: the server API is documented in
    docs/operations.md, not in docs/protocol.md or the public OpenAPI document."""
    return {(r.method, r.path) for r in routes if isinstance(r, web.RouteDef)}


def setup(app: web.Application) -> None:
    """Serve the server API (its routes answer 404 where it is off; see :func:`gate`)."""
    app[API_KEYS] = ApiKeys(app[SETTINGS].http.server_api_keys)
    app.router.add_routes(routes)
