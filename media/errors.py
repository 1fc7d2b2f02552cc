"""Media failures with a stable reason; the gateway maps each to a client error code."""

from __future__ import annotations


class MediaError(Exception):
    """Base of every failure media reports to its caller."""


class UnsupportedType(MediaError):
    """The declared content type is not a video type the platform accepts."""


class UploadTooLarge(MediaError):
    """More bytes than allowed (declared, or sent past a policy's limit)."""


class UploadRefused(MediaError):
    """An upload form was tampered with, expired, used twice or does not match what is sent."""


class LinkExpired(MediaError):
    """A signed playback link expired."""


class LinkInvalid(MediaError):
    """A signed playback link is malformed or its signature does not match."""


NOT_A_VIDEO = "not_a_video"
CONVERT_FAILED = "convert_failed"
CONVERT_TIMED_OUT = "convert_timed_out"
TOO_LONG = "too_long"
TOO_LARGE = "too_large"
RESOURCE_LIMIT = "resource_limit"
REASON_CODES = (NOT_A_VIDEO, CONVERT_FAILED, CONVERT_TIMED_OUT, TOO_LONG, TOO_LARGE, RESOURCE_LIMIT)
"""Every ``code`` a ``failed`` or ``rejected`` video's push carries (docs/protocol.md lists them)."""


class TranscodeFailed(MediaError):
    """ffmpeg could not read the upload or produce the outputs; the text is safe to show.

    ``code`` is the stable reason (one of :data:`REASON_CODES`) the owner's push carries.
    """

    def __init__(self, message: str, code: str = CONVERT_FAILED) -> None:
        super().__init__(message)
        self.code = code


class MediaRejected(TranscodeFailed):
    """The upload breaks a limit (too long, too large, more memory or CPU than a job may use).

    Recorded as ``rejected``, not ``failed``: the same file fails the same way every time, so
    the owner is told it is the file, not the platform.
    """
