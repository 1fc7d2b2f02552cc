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


class NotConfigured(MediaError):
    """The backend lacks a setting it needs (reported at start-up)."""


class TranscodeFailed(MediaError):
    """ffmpeg could not read the upload or produce the outputs; the text is safe to show."""
