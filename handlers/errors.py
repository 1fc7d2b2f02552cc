"""Client-facing errors: one table of stable codes, shared by WebSocket and REST.

Only errors a client can act on carry a code. Anything unexpected becomes ``internal_error``
in the gateway, is logged with its stack, and never shows its text to the client.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """A stable error code with its HTTP status and whether retrying may help."""

    code: str
    status: int
    retryable: bool


INVALID_JSON = ErrorKind("invalid_json", 400, False)
INVALID_FRAME = ErrorKind("invalid_frame", 400, False)
UNKNOWN_OP = ErrorKind("unknown_op", 400, False)
INVALID_PARAMS = ErrorKind("invalid_params", 400, False)
INVALID_CHANNEL = ErrorKind("invalid_channel", 400, False)
BINARY_NOT_SUPPORTED = ErrorKind("binary_not_supported", 400, False)
FRAME_TOO_LARGE = ErrorKind("frame_too_large", 413, False)
MESSAGE_TOO_LARGE = ErrorKind("message_too_large", 413, False)
REQUEST_TOO_LARGE = ErrorKind("request_too_large", 413, False)
UNAUTHORIZED = ErrorKind("unauthorized", 401, False)
TOKEN_EXPIRED = ErrorKind("token_expired", 401, False)
INVALID_CREDENTIALS = ErrorKind("invalid_credentials", 401, False)
INVALID_REFRESH_TOKEN = ErrorKind("invalid_refresh_token", 401, False)
COUNTRY_NOT_ALLOWED = ErrorKind("country_not_allowed", 403, False)
FORBIDDEN = ErrorKind("forbidden", 403, False)
NOT_FOUND = ErrorKind("not_found", 404, False)
METHOD_NOT_ALLOWED = ErrorKind("method_not_allowed", 405, False)
USERNAME_TAKEN = ErrorKind("username_taken", 409, False)
INVALID_EMAIL = ErrorKind("invalid_email", 400, False)
EMAIL_TAKEN = ErrorKind("email_taken", 409, False)
INVALID_EMAIL_TOKEN = ErrorKind("invalid_email_token", 401, False)
"""A mailed token that does not exist, is for another purpose, or no longer applies."""
EMAIL_TOKEN_USED = ErrorKind("email_token_used", 410, False)
EMAIL_TOKEN_EXPIRED = ErrorKind("email_token_expired", 410, False)
TOO_MANY_SUBSCRIPTIONS = ErrorKind("too_many_subscriptions", 429, False)
TOO_MANY_CONNECTIONS = ErrorKind("too_many_connections", 429, False)
RATE_LIMITED = ErrorKind("rate_limited", 429, True)
ORIGIN_NOT_ALLOWED = ErrorKind("origin_not_allowed", 403, False)
SESSION_REVOKED = ErrorKind("session_revoked", 401, False)
LIMIT_EXCEEDED = ErrorKind("limit_exceeded", 409, False)
UNSUPPORTED_MEDIA_TYPE = ErrorKind("unsupported_media_type", 415, False)
UPLOAD_TOO_LARGE = ErrorKind("upload_too_large", 413, False)
UPLOAD_REFUSED = ErrorKind("upload_refused", 403, False)
LINK_EXPIRED = ErrorKind("link_expired", 403, False)
VIDEO_NOT_READY = ErrorKind("video_not_ready", 409, False)
VIDEO_NOT_HELD = ErrorKind("video_not_held", 409, False)
INVALID_API_KEY = ErrorKind("invalid_api_key", 401, False)
BLOCKED = ErrorKind("blocked", 403, False)
SERVER_BUSY = ErrorKind("server_busy", 503, True)
UNAVAILABLE = ErrorKind("unavailable", 503, True)
INTERNAL_ERROR = ErrorKind("internal_error", 500, True)
BAD_REQUEST = ErrorKind("bad_request", 400, False)
"""The HTTP request itself does not parse (request line, headers, chunked framing)."""
REQUEST_TIMEOUT = ErrorKind("request_timeout", 408, True)
"""Headers or body did not arrive in time (``MOOSIC_HTTP_KEEPALIVE_TIMEOUT``, ``..._BODY_*``)."""

ALL_KINDS: tuple[ErrorKind, ...] = tuple(
    value for value in list(globals().values()) if isinstance(value, ErrorKind)
)


class OpError(Exception):
    """A failure the client is told about, with a stable code and a human message."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    def to_dict(self) -> dict[str, object]:
        """Return the body shared by the WebSocket error frame and REST error responses."""
        return {"code": self.kind.code, "message": self.message, "retryable": self.kind.retryable}


class RateLimitedError(OpError):
    """``rate_limited``: the caller spent its budget; ``retry_after`` seconds until it may retry."""

    def __init__(self, rule: str, retry_after: float) -> None:
        # Rounded up to the millisecond, never 0: a client that waits that long gets through.
        self.retry_after = max(0.001, -(-round(retry_after * 1e6) // 1000) / 1000)
        super().__init__(RATE_LIMITED, f"too many requests ({rule}); retry after the delay given")
        self.rule = rule

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "retry_after": self.retry_after}


def as_op_error(exc: Exception) -> OpError | None:
    """Translate storage failures into client errors; None for anything unexpected."""
    # Imported here so that this table of codes stays importable on its own.
    from storage.errors import Conflict, NotFound, Unavailable

    if isinstance(exc, OpError):
        return exc
    if isinstance(exc, Unavailable):
        return OpError(UNAVAILABLE, "storage is unavailable, retry shortly")
    if isinstance(exc, NotFound):
        return OpError(NOT_FOUND, str(exc))
    if isinstance(exc, Conflict):
        return OpError(LIMIT_EXCEEDED, str(exc))
    return None
