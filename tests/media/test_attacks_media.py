"""Issue 21, finding 5: media limits the upload's header cannot lie past (real ffmpeg).

Each attack file is crafted small: an MKV whose Segment Duration says 2 s over an 8 s stream,
and a ~0.5 MiB MKV of a PNG frame declaring 16000x16000 (zlib squeezes the black rows).
"""

from __future__ import annotations

import resource
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from media.ffmpeg import Limits, find_ffmpeg, probe
from media.local import LocalMedia
from tests.media.test_local import BASE, Clock, files_under, local_media, upload
from tests.support.media import MemoryLedger, make_clip

HUGE = 16000
LIMIT = 768 * 1024**2
"""An address space a tiny clip's job fits in and a 16000x16000 frame does not."""


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        [find_ffmpeg(), "-nostdin", "-hide_banner", "-v", "error", "-y", *args],
        check=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def lying_mkv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 s of video in an MKV whose header says 2 s."""
    folder = tmp_path_factory.mktemp("lie")
    honest = make_clip(folder / "honest.mkv", seconds=8, audio=False, size="160x120")
    data = bytearray(honest.read_bytes())
    # Matroska's Segment Duration: ID 0x4489, an 8-byte float, in TimecodeScale units (1 ms).
    at = data.find(b"\x44\x89\x88")
    assert at > 0
    assert struct.unpack(">d", data[at + 3 : at + 11]) == (8000.0,)
    data[at + 3 : at + 11] = struct.pack(">d", 2000.0)
    lying = folder / "lying.mkv"
    lying.write_bytes(bytes(data))
    return lying


def _png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    squeeze = zlib.compressobj(9)
    row = bytes(1 + width)  # filter byte + one gray byte a pixel, all black
    idat = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def huge_mkv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seconds of one 16000x16000 PNG frame (copied, never decoded, into an MKV)."""
    folder = tmp_path_factory.mktemp("huge")
    image = folder / "huge.png"
    image.write_bytes(_png(HUGE, HUGE))
    out = folder / "huge.mkv"
    _ffmpeg("-framerate", "1", "-loop", "1", "-t", "2", "-i", str(image), "-c", "copy", str(out))
    return out


@pytest.fixture(scope="module")
def huge_bytes(huge_mkv: Path) -> bytes:
    data = huge_mkv.read_bytes()
    assert len(data) < 1024 * 1024
    return data


@pytest.fixture(scope="module")
def lying_bytes(lying_mkv: Path) -> bytes:
    return lying_mkv.read_bytes()


async def _run_job(media: LocalMedia, data: bytes, content_type: str = "video/x-matroska") -> None:
    await media.start()
    try:
        form = await media.upload_form("alice", "vid1", content_type, len(data), BASE)
        await upload(media, form, data)
        assert await media.wait_idle(60)
    finally:
        await media.close()


def _outputs_left(root: Path) -> list[str]:
    return files_under(root / "videos") + files_under(root / ".work") + files_under(root / ".jobs")


async def test_the_lying_file_really_claims_a_short_duration(lying_mkv: Path) -> None:
    info = await probe(find_ffmpeg(), lying_mkv, Limits(max_seconds=3))
    assert info.duration == 2.0


async def test_a_stream_longer_than_its_header_is_rejected(
    tmp_path: Path, lying_bytes: bytes, ledger: MemoryLedger, clock: Clock
) -> None:
    root = tmp_path / "media"
    ledger.add("vid1", "alice")
    await _run_job(local_media(root, ledger, clock, max_seconds=3.0), lying_bytes)
    assert ledger.states("vid1") == ["processing", "rejected"]
    assert ledger.changes[-1].reason == "videos are at most 3 seconds long"
    assert ledger.changes[-1].detail == {"code": "too_long"}
    assert _outputs_left(root) == []


async def test_huge_frames_are_refused_before_decoding(
    tmp_path: Path, huge_bytes: bytes, ledger: MemoryLedger, clock: Clock
) -> None:
    root = tmp_path / "media"
    ledger.add("vid1", "alice")
    # Memory far below what decoding one 16000x16000 frame takes: the probe must not decode it.
    media = local_media(root, ledger, clock, ffmpeg_memory_bytes=512 * 1024**2)
    await _run_job(media, huge_bytes)
    assert ledger.states("vid1") == ["processing", "rejected"]
    assert ledger.changes[-1].detail == {"code": "too_large"}
    assert ledger.changes[-1].reason == "the video's frames are larger than allowed"
    assert _outputs_left(root) == []


async def test_declared_dimensions_past_the_setting_are_refused(
    tmp_path: Path, clip_bytes: bytes, ledger: MemoryLedger, clock: Clock
) -> None:
    # The 320x240 clip is inside max_pixels but wider than max_dimension.
    root = tmp_path / "media"
    ledger.add("vid1", "alice")
    media = local_media(root, ledger, clock, max_dimension=256)
    await _run_job(media, clip_bytes, "video/mp4")
    assert ledger.states("vid1") == ["processing", "rejected"]
    assert ledger.changes[-1].detail == {"code": "too_large"}
    assert ledger.changes[-1].reason == (
        "videos are at most 256 pixels wide and high and 16777216 pixels a frame"
    )
    assert _outputs_left(root) == []


async def test_a_file_needing_more_memory_than_the_limit_fails_cleanly(
    tmp_path: Path, huge_bytes: bytes, ledger: MemoryLedger, clock: Clock
) -> None:
    """With the size guard opened wide, RLIMIT_AS alone holds the hostile frame."""
    limit = LIMIT
    root = tmp_path / "media"
    ledger.add("vid1", "alice")
    media = local_media(
        root,
        ledger,
        clock,
        max_dimension=HUGE,
        max_pixels=HUGE * HUGE,
        ffmpeg_memory_bytes=limit,
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    await _run_job(media, huge_bytes)
    assert ledger.states("vid1") == ["processing", "rejected"]
    assert ledger.changes[-1].detail == {"code": "resource_limit"}
    assert ledger.changes[-1].reason == "the video needs more memory or time than a job may use"
    assert _outputs_left(root) == []
    # The job's ffmpeg children stayed inside their address space (resident <= address space):
    # the largest child this process ever waited for is no larger than before or the limit.
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    assert after <= max(before, limit)


async def test_a_normal_clip_is_still_ready(
    tmp_path: Path, clip_bytes: bytes, ledger: MemoryLedger, clock: Clock
) -> None:
    # Under the same memory limit that stops the huge frame, and the limits at their tightest.
    root = tmp_path / "media"
    ledger.add("vid1", "alice")
    media = local_media(root, ledger, clock, max_seconds=3.0, ffmpeg_memory_bytes=LIMIT)
    await _run_job(media, clip_bytes, "video/mp4")
    assert ledger.states("vid1") == ["processing", "moderating", "ready"]
    assert "videos/alice/vid1/master.m3u8" in files_under(root)
