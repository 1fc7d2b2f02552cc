"""Media on the gateway: the backend's lifecycle, and the media REST routes.

- ``POST /v1/media/uploads`` — a signed-in user declares a video (type, size, title); a record
  is created in ``uploading`` and the backend signs the form the phone uploads it with.
- ``POST /v1/media/uploads/local`` — (local backend) the signed form's target. The policy in
  the form's fields is verified before the file part is read; the file is streamed to disk in
  bounded chunks and refused past the policy's size. No access token: the signed policy is the
  credential, as with S3.
- ``GET /v1/videos/{video_id}/playback`` — signed links to a ready video.
- ``GET /v1/media/play/{token}/{path}`` — (local backend) the files behind those links, with
  HTTP ranges (aiohttp's ``FileResponse``: ``Range``, ``If-Range``, ``206``/``416``).

The backend starts after the store and the hub (its ledger needs both) and stops before them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.http.request import context, read_body
from gateway.http.routes import (
    INTEGER,
    NULLABLE_STRING,
    SIGNED_IN,
    STRING,
    Reply,
    RouteTable,
    Schema,
)
from gateway.keys import HUB, METRICS, SERVICES, SETTINGS, STORE
from gateway.settings import Settings
from handlers import media as media_ops
from handlers.errors import INVALID_PARAMS, NOT_FOUND, UPLOAD_TOO_LARGE, OpError
from media.aws import AwsConfig, AwsMedia
from media.errors import MediaError, UploadRefused
from media.keys import CONTENT_TYPES
from media.local import LocalConfig, LocalMedia
from media.model import DEFAULT_WATERMARK, Ledger, MediaBackend
from media.signing import Signer, derive_key

log = logging.getLogger(__name__)

MEDIA = web.AppKey("media", MediaBackend)

FIELD_MAX_BYTES = 8192
"""Largest form field before the file (a policy is well under 1 KiB)."""
FORM_MAX_FIELDS = 16
FORM_OVERHEAD = 64 * 1024
"""Bytes of multipart framing and fields allowed on top of the file itself."""
READ_CHUNK = 64 * 1024


def build_media(settings: Settings, ledger: Ledger, session: Any = None) -> MediaBackend:
    """Make the configured backend (not started)."""
    common: dict[str, Any] = {
        "max_upload_bytes": settings.media.max_upload_bytes,
        "upload_ttl": settings.media.media_upload_ttl,
        "playback_ttl": settings.media.media_playback_ttl,
        "ladder": settings.media.media_ladder,
        "segment_seconds": settings.media.media_segment_seconds,
        "max_seconds": settings.media.media_max_seconds,
    }
    watermark = (
        Path(settings.media.media_watermark)
        if settings.media.media_watermark
        else DEFAULT_WATERMARK
    )
    if settings.media.media_backend == "aws":
        key_file = settings.media.cloudfront_private_key_file
        config = AwsConfig(
            bucket=settings.media.media_bucket or "",
            region=settings.media.media_region,
            queue_url=settings.media.media_sqs_url,
            endpoint_url=settings.media.media_aws_endpoint,
            mediaconvert_endpoint=settings.media.media_mediaconvert_endpoint,
            mediaconvert_role=settings.media.media_mediaconvert_role or "",
            mediaconvert_queue=settings.media.media_mediaconvert_queue,
            watermark_file=watermark,
            cloudfront_domain=settings.media.cloudfront_domain or "",
            cloudfront_key_id=settings.media.cloudfront_key_id or "",
            cloudfront_private_key=Path(key_file).read_bytes() if key_file else b"",
            min_confidence=settings.media.media_min_confidence,
            **common,
        )
        return AwsMedia(config, ledger, session)
    local = LocalConfig(
        root=Path(settings.media.media_dir),
        # A key of its own, derived from the deployment's secret: every node agrees on it.
        signer=Signer(derive_key(settings.auth.jwt_secret, "local")),
        moderation="hold" if settings.media.media_moderation == "hold" else "allow",
        workers=settings.media.media_workers,
        ffmpeg=settings.media.media_ffmpeg,
        watermark=watermark,
        max_dimension=settings.media.media_max_dimension,
        max_pixels=settings.media.media_max_pixels,
        ffmpeg_memory_bytes=settings.media.media_ffmpeg_memory_bytes,
        ffmpeg_cpu_seconds=settings.media.media_ffmpeg_cpu_seconds,
        ffmpeg_threads=settings.media.media_ffmpeg_threads,
        **common,
    )
    return LocalMedia(local, ledger)


def setup(app: web.Application) -> None:
    """Add the backend's cleanup context (after the services'); :data:`ROUTES` are the routes."""
    app.cleanup_ctx.append(_media_ctx)


async def _media_ctx(app: web.Application) -> AsyncIterator[None]:
    backend = build_media(
        app[SETTINGS],
        media_ops.StoreLedger(app[STORE], app[HUB], app[SERVICES].feeds, app[SERVICES].notifier),
    )
    await backend.start()
    app[MEDIA] = backend
    metrics = app[METRICS]
    if isinstance(backend, (LocalMedia, AwsMedia)):
        metrics.counters["media_refused_keys"] = lambda: backend.refused
        transcodes = metrics.family("transcode")
        backend.observe_transcode = lambda seconds, outcome: transcodes.observe(
            seconds, backend.name, outcome
        )
    if isinstance(backend, LocalMedia):
        metrics.gauges["media_jobs_queued"] = lambda: backend.queued
    yield
    await backend.close()


def _base_url(request: web.Request) -> str:
    configured = request.app[SETTINGS].media.media_public_url
    if configured:
        return configured.rstrip("/")
    return f"{request.scheme}://{request.host}"


def _local(request: web.Request) -> LocalMedia:
    backend = request.app[MEDIA]
    if not isinstance(backend, LocalMedia):
        raise OpError(NOT_FOUND, "uploads and playback go through the CDN on this deployment")
    return backend


_NULLABLE_MAP: Schema = {"type": ["object", "null"], "additionalProperties": STRING}
ROUTES = RouteTable(
    {
        "UploadForm": {
            "type": "object",
            "properties": {
                "method": {"const": "POST"},
                "url": STRING,
                "fields": {"type": "object", "additionalProperties": STRING},
                "file_field": {"const": "file"},
                "key": STRING,
                "content_type": STRING,
                "max_bytes": INTEGER,
                "expires_at": INTEGER,
            },
            "required": ["method", "url", "fields", "file_field", "key", "expires_at"],
        },
        "UploadCreated": {
            "type": "object",
            "properties": {
                "video_id": STRING,
                "state": {"const": "uploading"},
                "upload": {"$ref": "#/components/schemas/UploadForm"},
            },
            "required": ["video_id", "state", "upload"],
            "additionalProperties": False,
        },
        "Playback": {
            "type": "object",
            "properties": {
                "video_id": STRING,
                "type": {"const": "hls"},
                "master_url": STRING,
                "thumbnail_url": STRING,
                "expires_at": INTEGER,
                "cookies": _NULLABLE_MAP,
                "cookie_domain": NULLABLE_STRING,
                "cookie_path": NULLABLE_STRING,
                "query": NULLABLE_STRING,
            },
            "required": ["video_id", "type", "master_url", "thumbnail_url", "expires_at"],
            "additionalProperties": False,
        },
    },
    tag="media",
)
VIDEO_PARAM = {"video_id": {"type": "string", "minLength": 1, "maxLength": 64}}
UPLOAD_FORM: Schema = {
    "type": "object",
    "properties": {
        **{name: STRING for name in ("key", "Content-Type", "policy", "signature")},
        "file": {"type": "string", "format": "binary"},
    },
    "required": ["key", "Content-Type", "policy", "signature", "file"],
    "additionalProperties": False,
}
"""The signed form's fields (`media.local`), then the file: a form made up, or one not signed
for this key, is refused before the file is read (403 `upload_refused`)."""


def _upload_size(schema: Schema, settings: Settings) -> Schema:
    return {**schema, "maximum": settings.media.max_upload_bytes}


def _upload_type(schema: Schema, settings: Settings) -> Schema:
    # The types `media.keys.extension_for` accepts (others: 415 `unsupported_media_type`).
    return {"enum": list(CONTENT_TYPES)}


@ROUTES.route(
    "POST",
    "/v1/media/uploads",
    "Declare a video upload: a record in `uploading` and a signed upload form",
    ok={201: "UploadCreated"},
    errors=(*SIGNED_IN, 413, 415),
    params=media_ops.UploadParams,
    in_body=True,
    fields={"size": _upload_size, "content_type": _upload_type},
)
async def create_upload(request: web.Request) -> Reply:
    ctx = context(request)
    params = await read_body(request, media_ops.UploadParams)
    result = await media_ops.create_upload(
        ctx,
        request.app[MEDIA],
        params,
        _base_url(request),
        request.app[SETTINGS].media.max_upload_bytes,
    )
    return Reply(result)


@ROUTES.route(
    "GET",
    "/v1/videos/{video_id}/playback",
    "Signed HLS links (and CloudFront cookies) for a ready video",
    ok={200: "Playback"},
    errors=(*SIGNED_IN, 404, 409),
    path_params=VIDEO_PARAM,
)
async def playback(request: web.Request) -> Reply:
    ctx = context(request)
    result = await media_ops.playback(
        ctx, request.app[MEDIA], request.match_info["video_id"], _base_url(request)
    )
    return Reply(result)


async def _field(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(1024):
        data += chunk
        if len(data) > FIELD_MAX_BYTES:
            raise UploadRefused(f"form field {part.name!r} is too long")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UploadRefused(f"form field {part.name!r} is not UTF-8") from None


@ROUTES.route(
    "POST",
    "/v1/media/uploads/local",
    "Upload a video with a signed form (local backend; multipart/form-data: the form's "
    "fields, then the file as `file`); 204 when stored",
    ok={204: None},
    errors=(400, 403, 404, 413, 429),
    auth=False,
    form=UPLOAD_FORM,
)
async def local_upload(request: web.Request) -> web.Response:
    media = _local(request)
    limit = request.app[SETTINGS].media.max_upload_bytes
    if request.content_length is not None and request.content_length > limit + FORM_OVERHEAD:
        raise OpError(UPLOAD_TOO_LARGE, f"uploads are at most {limit} bytes")
    if not request.content_type.startswith("multipart/form-data"):
        raise OpError(INVALID_PARAMS, "the upload must be multipart/form-data")
    try:
        reader = await request.multipart()
        fields: dict[str, str] = {}
        while True:
            part = await reader.next()
            if part is None:
                raise UploadRefused("the form has no file part")
            if not isinstance(part, BodyPartReader) or not part.name:
                raise UploadRefused("the form's parts must be named fields")
            if part.name == "file":
                break
            if part.name in fields or len(fields) >= FORM_MAX_FIELDS:
                raise UploadRefused("the form has repeated or too many fields")
            fields[part.name] = await _field(part)
        # Everything the policy pins is checked before one byte of the file is read.
        policy = media.check_form(fields)
        async with media.receive(policy) as sink:
            while chunk := await part.read_chunk(READ_CHUNK):
                await sink.write(chunk)
            await sink.commit()
    except MediaError as exc:
        raise media_ops.client_error(exc) from None
    except (ValueError, HttpProcessingError) as exc:  # a malformed multipart body (or part header)
        raise OpError(INVALID_PARAMS, f"the upload is not a valid form: {exc}") from None
    except (ClientPayloadError, ConnectionError):
        # The phone went away mid-upload (the partial file is gone already); nothing to log.
        raise OpError(INVALID_PARAMS, "the upload was cut short") from None
    log.info("upload %s stored (%d bytes)", policy.key, sink.size)
    return web.Response(status=204)


@ROUTES.route(
    "GET",
    "/v1/media/play/{token}/{path:.+}",
    "A file of a ready video behind a signed link (local backend; HTTP ranges)",
    ok={200: None, 206: None},
    errors=(403, 404, 429),
    auth=False,
    path_params={
        "token": {"type": "string", "minLength": 1},
        "path": {"type": "string", "minLength": 1},
    },
)
async def play_file(request: web.Request) -> web.StreamResponse:
    media = _local(request)
    try:
        served = media.resolve(request.match_info["token"], request.match_info["path"])
    except MediaError as exc:
        raise media_ops.client_error(exc) from None
    except FileNotFoundError:
        raise OpError(NOT_FOUND, "no such file in this video") from None
    max_age = max(0, served.expires_at - int(time.time()))
    return web.FileResponse(
        served.path,
        headers={
            "Content-Type": served.content_type,
            # The link's signature is in the path: caches may keep the file until it expires.
            "Cache-Control": f"private, max-age={max_age}",
            "Cross-Origin-Resource-Policy": "cross-origin",
        },
    )
