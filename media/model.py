"""States, records and the small protocols between media and whoever keeps video records.

Media never touches the database. The gateway hands each backend a :class:`Ledger`: it reads a
video's owner and state, and records each change of state (and tells the owner, live). The
backends and workers only decide *which* change to make, in this order::

    uploading -> processing -> moderating -> ready
                    |    |             |  \\-> rejected (content rules)
                    |    \\-> rejected (a limit: too long, too large, resource limit)
                    \\-> failed <------/
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol


class VideoState(StrEnum):
    UPLOADING = "uploading"
    PROCESSING = "processing"
    MODERATING = "moderating"
    READY = "ready"
    REJECTED = "rejected"
    FAILED = "failed"


NEXT_STATES: dict[VideoState, frozenset[VideoState]] = {
    VideoState.UPLOADING: frozenset({VideoState.PROCESSING, VideoState.FAILED}),
    # A video breaking a limit (found while converting) is rejected without moderation.
    VideoState.PROCESSING: frozenset(
        {VideoState.MODERATING, VideoState.REJECTED, VideoState.FAILED}
    ),
    VideoState.MODERATING: frozenset({VideoState.READY, VideoState.REJECTED, VideoState.FAILED}),
    VideoState.READY: frozenset(),
    VideoState.REJECTED: frozenset(),
    VideoState.FAILED: frozenset(),
}
"""Every change a worker may make; anything else is a bug or a duplicate delivery."""


@dataclass(frozen=True, slots=True)
class VideoRef:
    """What media needs to know about a video record."""

    id: str
    owner: str
    state: VideoState


@dataclass(frozen=True, slots=True)
class Change:
    """One change of state, as recorded and as pushed to the owner."""

    video_id: str
    owner: str
    before: VideoState
    state: VideoState
    reason: str | None = None
    """Why a video failed or was rejected, or why it waits (for people, safe to show)."""
    detail: Mapping[str, object] = field(default_factory=dict)
    """Extra facts for the owner's app (``moderation``, ``renditions``, ``labels``...)."""

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {
            "type": "video_state",
            "video_id": self.video_id,
            "state": self.state.value,
        }
        if self.reason is not None:
            body["reason"] = self.reason
        body.update(self.detail)
        return body


class Ledger(Protocol):
    """The gateway's side: video records and the owner's ``user:{id}`` channel."""

    async def get(self, video_id: str) -> VideoRef | None:
        """Return the video's owner and state; None when there is no such video."""
        ...

    async def record(self, change: Change) -> bool:
        """Store ``change`` if the video is still in ``change.before``, then tell the owner.

        Return False (recording and pushing nothing) when the video is gone or has moved on:
        another worker or a duplicate delivery got there first.
        """
        ...


@dataclass(frozen=True, slots=True)
class Rung:
    """One rendition of the HLS ladder: its height in pixels (the width follows the source's
    aspect ratio) and its video bitrate."""

    height: int
    video_kbps: int

    @property
    def name(self) -> str:
        return f"{self.height}p"


DEFAULT_WATERMARK = Path(__file__).with_name("assets") / "watermark.png"
"""The Moosic logo, burnt into the top left corner of every rendition."""

DEFAULT_LADDER: tuple[Rung, ...] = (Rung(360, 800), Rung(480, 1400), Rung(720, 2800))


def parse_ladder(text: str) -> tuple[Rung, ...]:
    """Parse ``"360:800,480:1400,720:2800"`` (height : video kbit/s), lowest first."""
    rungs = []
    for part in text.split(","):
        height, sep, kbps = part.strip().partition(":")
        if not sep or not height.isdigit() or not kbps.isdigit():
            raise ValueError("must be HEIGHT:KBPS pairs, comma-separated (e.g. 360:800,720:2800)")
        h, k = int(height), int(kbps)
        if not 16 <= h <= 4320 or h % 2 or not 16 <= k <= 100_000:
            raise ValueError("heights must be even, 16-4320; bitrates 16-100000 kbit/s")
        rungs.append(Rung(h, k))
    if len(rungs) != 3:
        raise ValueError("the ladder has exactly three rungs")
    rungs.sort(key=lambda r: r.height)
    if len({r.height for r in rungs}) != len(rungs):
        raise ValueError("rung heights must differ")
    return tuple(rungs)


@dataclass(frozen=True, slots=True)
class UploadForm:
    """How a phone uploads one video: a multipart POST of ``fields`` then the file.

    The same shape on both backends (an S3 presigned POST on ``aws``), so one client code path
    serves both: send every field as given, in order, then the bytes as the ``file`` part.
    """

    url: str
    fields: dict[str, str]
    key: str
    content_type: str
    max_bytes: int
    expires_at: int
    """Seconds since the epoch after which the form is refused."""

    def to_dict(self) -> dict[str, object]:
        return {
            "method": "POST",
            "url": self.url,
            "fields": self.fields,
            "file_field": "file",
            "key": self.key,
            "content_type": self.content_type,
            "max_bytes": self.max_bytes,
            "expires_at": self.expires_at,
        }


@dataclass(frozen=True, slots=True)
class Playback:
    """Signed links to a ready video.

    ``master_url`` plays on its own on ``local`` (the signature is a path prefix, so the
    playlists' relative links carry it). On ``aws`` the master URL is signed for that one file;
    the player gets the variants and segments with ``cookies`` (or by appending ``query``).
    """

    video_id: str
    master_url: str
    thumbnail_url: str
    expires_at: int
    cookies: dict[str, str] | None = None
    cookie_domain: str | None = None
    cookie_path: str | None = None
    query: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "video_id": self.video_id,
            "type": "hls",
            "master_url": self.master_url,
            "thumbnail_url": self.thumbnail_url,
            "expires_at": self.expires_at,
            "cookies": self.cookies,
            "cookie_domain": self.cookie_domain,
            "cookie_path": self.cookie_path,
            "query": self.query,
        }


class MediaBackend(Protocol):
    """What the gateway calls, whichever backend is configured."""

    name: str

    async def start(self) -> None:
        """Open clients and start the worker."""
        ...

    async def close(self) -> None:
        """Stop the worker (a job in progress is abandoned and retried later) and clients."""
        ...

    async def upload_form(
        self, owner: str, video_id: str, content_type: str, size: int, base_url: str
    ) -> UploadForm:
        """Sign a form for one upload of at most ``size`` bytes of ``content_type``."""
        ...

    async def playback(self, owner: str, video_id: str, base_url: str) -> Playback:
        """Sign links to a ready video's outputs."""
        ...
