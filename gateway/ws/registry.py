"""The op registry: decode and validate a frame in one pass, then find its handler.

All ops' params structs form one tagged union on ``op``, so msgspec parses and validates a
frame in a single pass without an intermediate dict. Only when that fails is the frame looked
at again (with orjson) to tell the client precisely what was wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Union

import msgspec
import orjson

from gateway.metrics import Metrics
from handlers.base import Context, Operation, Params
from handlers.errors import (
    INTERNAL_ERROR,
    INVALID_FRAME,
    INVALID_JSON,
    INVALID_PARAMS,
    UNKNOWN_OP,
    OpError,
    as_op_error,
)
from handlers.messages import error_message, result_message

log = logging.getLogger(__name__)

MAX_SAFE_ID = 2**53 - 1


class FrameError(OpError):
    """A frame that could not be turned into an op call; ``request_id`` echoes its ``id``."""

    def __init__(self, error: OpError, request_id: int | None) -> None:
        super().__init__(error.kind, error.message)
        self.request_id = request_id


class Registry:
    """Ops by name, the decoder for their frames, and the call that answers a frame."""

    def __init__(self, operations: Iterable[Operation[Any]], metrics: Metrics) -> None:
        self._metrics = metrics
        self._ops: dict[type[Params], Operation[Any]] = {}
        self._names: dict[str, Operation[Any]] = {}
        for op in operations:
            if op.name in self._names:
                raise ValueError(f"op {op.name!r} registered twice")
            self._ops[op.params] = op
            self._names[op.name] = op
        union = Union[tuple(self._ops)]  # type: ignore[valid-type]  # noqa: UP007
        self._decoder: msgspec.json.Decoder[Params] = msgspec.json.Decoder(union)

    @property
    def names(self) -> list[str]:
        return sorted(self._names)

    def decode(self, frame: bytes) -> tuple[Operation[Any], Params]:
        """Return the op and its validated params, or raise :class:`FrameError`."""
        try:
            # msgspec skips unknown fields and Raw values without checking their UTF-8, and a
            # text frame we forward must be valid UTF-8 for every other client.
            frame.decode("utf-8")
            params = self._decoder.decode(frame)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            # msgspec reports invalid UTF-8 inside strings as UnicodeDecodeError.
            raise self._explain(frame, exc) from None
        except RecursionError:
            raise FrameError(
                OpError(INVALID_FRAME, "the frame is nested too deeply"), None
            ) from None
        if params.id is not None and not 0 <= params.id <= MAX_SAFE_ID:
            raise FrameError(OpError(INVALID_FRAME, "id must be an integer from 0 to 2^53-1"), None)
        return self._ops[type(params)], params

    async def handle(self, ctx: Context, frame: bytes) -> bytes:
        """Decode, validate and run one frame; return the encoded reply or error."""
        try:
            op, params = self.decode(frame)
        except FrameError as exc:
            self._metrics.ws_errors_sent += 1
            return error_message(exc.request_id, exc)
        try:
            result = await op(ctx, params)
        except Exception as exc:  # every failure becomes an error reply
            error = as_op_error(exc)
            if error is None:
                log.exception("op %s failed", op.name)
                self._metrics.internal_errors += 1
                error = OpError(INTERNAL_ERROR, "internal error")
            self._metrics.ws_errors_sent += 1
            return error_message(params.id, error)
        return result_message(params.id, result)

    def _explain(self, frame: bytes, exc: msgspec.DecodeError | UnicodeDecodeError) -> FrameError:
        bad_utf8 = isinstance(exc, UnicodeDecodeError)
        try:
            doc = orjson.loads(frame.decode("utf-8", "replace") if bad_utf8 else frame)
        except orjson.JSONDecodeError:
            return FrameError(OpError(INVALID_JSON, "the frame is not valid UTF-8 JSON"), None)
        if not isinstance(doc, dict):
            return FrameError(OpError(INVALID_FRAME, "a frame must be a JSON object"), None)
        raw_id = doc.get("id")
        request_id: int | None = None
        # bool is an int to Python, not to clients: "id": true is not an id.
        if isinstance(raw_id, int) and not isinstance(raw_id, bool) and 0 <= raw_id <= MAX_SAFE_ID:
            request_id = raw_id
        if raw_id is not None and request_id is None:
            return FrameError(
                OpError(INVALID_FRAME, "id must be an integer from 0 to 2^53-1"), None
            )
        if bad_utf8:
            return FrameError(OpError(INVALID_JSON, "the frame is not valid UTF-8"), request_id)
        op = doc.get("op")
        if not isinstance(op, str):
            return FrameError(OpError(INVALID_FRAME, "a frame needs a string field op"), request_id)
        if op not in self._names:
            return FrameError(OpError(UNKNOWN_OP, f"unknown op {op[:64]!r}"), request_id)
        return FrameError(OpError(INVALID_PARAMS, str(exc)), request_id)
