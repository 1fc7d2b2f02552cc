"""Where things live, in a bucket or a folder, and which uploads are accepted.

One layout for both backends, relative to the bucket (``aws``) or the media folder (``local``):

- ``users/{owner}/uploads/{video_id}.{ext}`` — the original, written by the phone through a
  signed form that pins exactly this key. The video's id plays the role of the key's unique
  name, so the worker finds the record from the key alone (no extra metadata read).
- ``videos/{owner}/{video_id}/`` — the outputs: ``master.m3u8``, one playlist and its
  segments per rendition, ``thumb.jpg`` (local) or ``thumbs/thumb.NNNNNNN.jpg`` (aws). They are
  outside ``users/`` on purpose: the bucket notifies the worker of new objects under ``users/``
  only, so the hundreds of segments a job writes never reach the queue.

Everything the worker reads from a key is checked here first: a key that does not parse is
outside every user's prefix and is never processed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from media.errors import UnsupportedType

CONTENT_TYPES: dict[str, str] = {
    "video/mp4": "mp4",
    "video/quicktime": "mov",
    "video/webm": "webm",
    "video/3gpp": "3gp",
    "video/x-matroska": "mkv",
}
"""Accepted upload types and the extension each is stored under."""

_ID = r"[A-Za-z0-9_-]{1,64}"
ID_RE = re.compile(_ID)
_UPLOAD_RE = re.compile(
    rf"users/(?P<owner>{_ID})/uploads/(?P<video>{_ID})\.(?P<ext>{'|'.join(CONTENT_TYPES.values())})"
)


@dataclass(frozen=True, slots=True)
class UploadKey:
    """A parsed upload key: whose it is, for which video, of which type."""

    owner: str
    video_id: str
    ext: str

    @property
    def key(self) -> str:
        return f"users/{self.owner}/uploads/{self.video_id}.{self.ext}"


def check_id(value: str, what: str) -> str:
    """Return ``value`` if it is a safe path component (1-64 of ``A-Z a-z 0-9 _ -``)."""
    if ID_RE.fullmatch(value) is None:
        raise ValueError(f"{what} must be 1-64 of A-Z a-z 0-9 _ -")
    return value


def extension_for(content_type: str) -> str:
    """Return the stored extension of an accepted content type; raise UnsupportedType."""
    ext = CONTENT_TYPES.get(content_type.strip().lower())
    if ext is None:
        raise UnsupportedType(
            f"content type {content_type[:100]!r} is not accepted; use one of "
            + ", ".join(CONTENT_TYPES)
        )
    return ext


def upload_key(owner: str, video_id: str, content_type: str) -> UploadKey:
    """Return the one key a video's original may be written to."""
    return UploadKey(
        check_id(owner, "owner"), check_id(video_id, "video id"), extension_for(content_type)
    )


def parse_upload_key(key: str) -> UploadKey | None:
    """Parse ``users/{owner}/uploads/{video_id}.{ext}``; None for any other key."""
    found = _UPLOAD_RE.fullmatch(key)
    if found is None:
        return None
    return UploadKey(found["owner"], found["video"], found["ext"])


def video_prefix(owner: str, video_id: str) -> str:
    """Return the folder of a video's outputs, ending with ``/``."""
    return f"videos/{check_id(owner, 'owner')}/{check_id(video_id, 'video id')}/"
