from __future__ import annotations

import pytest

from gateway.metrics import Metrics
from gateway.ws.frames import text_frame
from gateway.ws.registry import FrameError, Registry
from handlers import OPERATIONS
from handlers.chat import PublishParams


@pytest.fixture
def registry() -> Registry:
    return Registry(OPERATIONS, Metrics())


def test_decodes_known_ops(registry: Registry) -> None:
    op, params = registry.decode(b'{"op":"publish","id":7,"channel":"room:a","data":{"x":[1,2]}}')
    assert op.name == "publish"
    assert isinstance(params, PublishParams)
    assert params.id == 7
    assert bytes(params.data) == b'{"x":[1,2]}'


def test_every_op_is_listed(registry: Registry) -> None:
    names = registry.names
    assert names == sorted(names)
    assert len(names) == len(OPERATIONS)
    expected = {
        "subscribe", "unsubscribe", "publish", "history", "ping", "create_group", "get_group",
        "add_member", "remove_member", "presence", "watch_presence", "unwatch_presence", "typing",
    }  # fmt: skip
    assert expected <= set(names)


def test_duplicate_registration_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        Registry([*OPERATIONS, OPERATIONS[0]], Metrics())


@pytest.mark.parametrize(
    ("frame", "code", "request_id"),
    [
        (b"\xff\xfe", "invalid_json", None),
        (b'{"op":"ping","id":3,"x":"\xff"}', "invalid_json", 3),
        (b'{"op":"ping","id":9007199254740992}', "invalid_frame", None),
        (b'{"op":"history","id":1,"channel":"room:a","before":""}', "invalid_params", 1),
        (b'{"op":"history","id":1,"channel":"room:a","limit":1.5}', "invalid_params", 1),
        (b'{"op":"unknown","id":2}', "unknown_op", 2),
    ],
)
def test_decode_errors(registry: Registry, frame: bytes, code: str, request_id: int | None) -> None:
    with pytest.raises(FrameError) as caught:
        registry.decode(frame)
    assert (caught.value.kind.code, caught.value.request_id) == (code, request_id)


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_text_frame_header_lengths(size: int) -> None:
    payload = b"a" * size
    frame = text_frame(payload)
    assert frame[0] == 0x81
    if size < 126:
        assert (frame[1], frame[2:]) == (size, payload)
    elif size < 65536:
        assert (frame[1], int.from_bytes(frame[2:4], "big"), frame[4:]) == (126, size, payload)
    else:
        assert (frame[1], int.from_bytes(frame[2:10], "big"), frame[10:]) == (127, size, payload)
