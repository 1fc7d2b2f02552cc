"""The media routes' entries in the OpenAPI document (:mod:`gateway.http.openapi` adds them)."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.http.openapi import INTEGER, NULLABLE_STRING, SIGNED_IN, STRING, Endpoint
from gateway.settings import Settings
from handlers.media import UploadParams
from media.keys import CONTENT_TYPES

VIDEO_PARAM = {"video_id": {"type": "string", "minLength": 1, "maxLength": 64}}


def schemas() -> dict[str, Any]:
    nullable_map = {"type": ["object", "null"], "additionalProperties": STRING}
    return {
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
                "cookies": nullable_map,
                "cookie_domain": NULLABLE_STRING,
                "cookie_path": NULLABLE_STRING,
                "query": NULLABLE_STRING,
            },
            "required": ["video_id", "type", "master_url", "thumbnail_url", "expires_at"],
            "additionalProperties": False,
        },
    }


def endpoints(settings: Settings) -> list[Endpoint]:
    (body,), components = msgspec.json.schema_components([UploadParams], ref_template="{name}")
    upload = dict(components[body["$ref"]])
    upload.pop("title", None)
    upload["properties"]["size"]["maximum"] = settings.max_upload_bytes
    # The types `media.keys.extension_for` accepts (others: 415 `unsupported_media_type`).
    upload["properties"]["content_type"] = {"enum": list(CONTENT_TYPES)}
    # The signed form's fields (`media.local`), then the file: a form made up, or one not signed
    # for this key, is refused before the file is read (403 `upload_refused`).
    form = {
        "type": "object",
        "properties": {
            **{name: STRING for name in ("key", "Content-Type", "policy", "signature")},
            "file": {"type": "string", "format": "binary"},
        },
        "required": ["key", "Content-Type", "policy", "signature", "file"],
        "additionalProperties": False,
    }
    return [
        Endpoint(
            "POST",
            "/v1/media/uploads",
            "Declare a video upload: a record in `uploading` and a signed upload form",
            {201: "UploadCreated"},
            (*SIGNED_IN, 413, 415),
            body=upload,
            tag="media",
        ),
        Endpoint(
            "POST",
            "/v1/media/uploads/local",
            "Upload a video with a signed form (local backend; multipart/form-data: the form's "
            "fields, then the file as `file`); 204 when stored",
            {204: None},
            (400, 403, 404, 413, 429),
            auth=False,
            tag="media",
            form=form,
        ),
        Endpoint(
            "GET",
            "/v1/videos/{video_id}/playback",
            "Signed HLS links (and CloudFront cookies) for a ready video",
            {200: "Playback"},
            (*SIGNED_IN, 404, 409),
            path_params=VIDEO_PARAM,
            tag="media",
        ),
        Endpoint(
            "GET",
            "/v1/media/play/{token}/{path}",
            "A file of a ready video behind a signed link (local backend; HTTP ranges)",
            {200: None, 206: None},
            (403, 404, 429),
            auth=False,
            path_params={
                "token": {"type": "string", "minLength": 1},
                "path": {"type": "string", "minLength": 1},
            },
            tag="media",
        ),
    ]
