"""The local backend end to end with the real ffmpeg: signed form, worker, outputs, playback."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from media.errors import LinkExpired, LinkInvalid, UnsupportedType, UploadRefused, UploadTooLarge
from media.ffmpeg import find_ffmpeg
from media.local import LocalConfig, LocalMedia
from media.model import UploadForm, VideoState
from media.signing import Signer
from tests.support.media import TINY_LADDER, MemoryLedger

SECRET = b"k" * 32
BASE = "http://gw.test"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def local_media(root: Path, ledger: MemoryLedger, clock: Clock, **changes: object) -> LocalMedia:
    config = LocalConfig(
        root=root,
        signer=Signer(SECRET),
        max_upload_bytes=10 * 1024 * 1024,
        ladder=TINY_LADDER,
        segment_seconds=1,
        clock=clock,
        **changes,  # type: ignore[arg-type]
    )
    return LocalMedia(config, ledger)


async def upload(media: LocalMedia, form: UploadForm, data: bytes, chunk: int = 65536) -> None:
    policy = media.check_form(form.fields)
    async with media.receive(policy) as sink:
        for start in range(0, len(data), chunk):
            await sink.write(data[start : start + chunk])
        await sink.commit()


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def ffmpeg_run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [find_ffmpeg(), "-nostdin", "-hide_banner", "-v", "error", *args],
        capture_output=True,
        timeout=60,
        check=False,
    )


def frame(source: Path, index: int, width: int, height: int) -> bytes:
    """Decode frame ``index`` of ``source`` as RGB at ``width`` x ``height``."""
    done = ffmpeg_run(
        "-i",
        str(source),
        "-vf",
        f"select=eq(n\\,{index}),scale={width}:{height}",
        "-frames:v",
        "1",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout) == width * height * 3
    return done.stdout


def changed(a: bytes, b: bytes, width: int, box: tuple[int, int, int, int]) -> float:
    """Fraction of the pixels in ``box`` that differ clearly (not compression noise)."""
    x0, y0, x1, y1 = box
    hits = 0
    for y in range(y0, y1):
        for x in range(x0, x1):
            at = (y * width + x) * 3
            hits += sum(abs(a[at + c] - b[at + c]) for c in range(3)) > 300
    return hits / ((x1 - x0) * (y1 - y0))


async def test_upload_transcode_moderate_and_play(
    tmp_path: Path, clip: Path, clip_bytes: bytes, ledger: MemoryLedger, clock: Clock
) -> None:
    root = tmp_path / "media"
    media = local_media(root, ledger, clock)
    await media.start()
    try:
        ledger.add("vid1", "alice")
        form = await media.upload_form("alice", "vid1", "video/mp4", len(clip_bytes), BASE)
        assert form.url == BASE + "/v1/media/uploads/local"
        assert form.key == "users/alice/uploads/vid1.mp4"
        assert form.expires_at == clock.now + 900
        await upload(media, form, clip_bytes)
        assert await media.wait_idle(60)
    finally:
        await media.close()

    assert ledger.states("vid1") == ["processing", "moderating", "ready"]
    moderating, ready = ledger.changes[1], ledger.changes[2]
    assert moderating.detail == {"renditions": ["72p", "96p", "144p"]}
    assert ready.to_dict() == {
        "type": "video_state",
        "video_id": "vid1",
        "state": "ready",
        "moderation": "unmoderated",
    }
    out = root / "videos/alice/vid1"
    assert (root / "users/alice/uploads/vid1.mp4").read_bytes() == clip_bytes
    assert files_under(root / ".jobs") == []
    assert files_under(root / ".incoming") == []
    assert files_under(root / ".work") == []

    master = (out / "master.m3u8").read_text()
    assert master.count("#EXT-X-STREAM-INF") == 3
    for name, size in [("72p", "96x72"), ("96p", "128x96"), ("144p", "192x144")]:
        assert f"RESOLUTION={size}" in master
        assert f"{name}/index.m3u8" in master
        playlist = (out / name / "index.m3u8").read_text()
        assert "#EXT-X-ENDLIST" in playlist
        segments = [line for line in playlist.splitlines() if line.endswith(".ts")]
        assert len(segments) == 3  # 3 s in 1 s segments
        for segment in segments:
            decoded = ffmpeg_run("-i", str(out / name / segment), "-f", "null", "-")
            assert (decoded.returncode, decoded.stderr) == (0, b"")
        whole = ffmpeg_run("-i", str(out / name / "index.m3u8"), "-f", "null", "-")
        assert whole.returncode == 0, whole.stderr

    thumb = out / "thumb.jpg"
    assert thumb.read_bytes()[:3] == b"\xff\xd8\xff"
    assert len(frame(thumb, 0, 192, 144)) == 192 * 144 * 3

    # The watermark is burnt in, top left: there the rendition differs from the source; away
    # from it only compression noise does.
    width, height = 192, 144
    ours = frame(out / "144p" / "index.m3u8", 25, width, height)
    theirs = frame(clip, 25, width, height)
    corner = changed(ours, theirs, width, (4, 4, 48, 16))
    others = [
        changed(ours, theirs, width, box)
        for box in [(144, 4, 188, 16), (4, 128, 48, 140), (144, 128, 188, 140), (60, 40, 190, 120)]
    ]
    assert corner > 0.05, (corner, others)
    assert max(others) < 0.01, (corner, others)

    # Playback: signed links, served only from the video's folder, until they expire.
    playback = await media.playback("alice", "vid1", BASE)
    assert playback.expires_at == clock.now + 900
    prefix = BASE + "/v1/media/play/"
    assert playback.master_url.startswith(prefix)
    assert playback.master_url.endswith("/master.m3u8")
    token = playback.master_url[len(prefix) :].split("/")[0]
    assert playback.thumbnail_url == f"{prefix}{token}/thumb.jpg"
    served = media.resolve(token, "144p/seg_001.ts")
    assert served.path == out / "144p" / "seg_001.ts"
    assert served.content_type == "video/mp2t"
    assert media.resolve(token, "master.m3u8").content_type == "application/vnd.apple.mpegurl"
    for bad in ["../uploads/vid1.mp4", "../../bob/videos/x/master.m3u8", "144p/../x.ts", "a.mp4"]:
        with pytest.raises(LinkInvalid):
            media.resolve(token, bad)
    with pytest.raises(FileNotFoundError):
        media.resolve(token, "144p/seg_999.ts")
    forged = token.replace("alice", "bobby")
    with pytest.raises(LinkInvalid):
        media.resolve(forged, "master.m3u8")
    clock.now = playback.expires_at
    with pytest.raises(LinkExpired):
        media.resolve(token, "master.m3u8")


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("wrong_prefix", UploadRefused),
        ("other_users_policy", UploadRefused),
        ("wrong_type", UploadRefused),
        ("too_many_bytes", UploadTooLarge),
        ("expired", UploadRefused),
        ("tampered_policy", UploadRefused),
        ("tampered_signature", UploadRefused),
        ("empty", UploadRefused),
    ],
)
async def test_bad_uploads_are_refused_and_leave_nothing(
    tmp_path: Path, ledger: MemoryLedger, clock: Clock, case: str, error: type[Exception]
) -> None:
    root = tmp_path / "media"
    media = local_media(root, ledger, clock)
    await media.start()
    try:
        ledger.add("vid1", "alice")
        form = await media.upload_form("alice", "vid1", "video/mp4", 1000, BASE)
        other = await media.upload_form("bob", "vid2", "video/mp4", 1000, BASE)
        fields = dict(form.fields)
        data = b"\0" * 1000
        if case == "wrong_prefix":
            fields["key"] = "users/bob/uploads/vid1.mp4"
        elif case == "other_users_policy":
            fields["policy"], fields["signature"] = (
                other.fields["policy"],
                other.fields["signature"],
            )
        elif case == "wrong_type":
            fields["Content-Type"] = "video/webm"
        elif case == "too_many_bytes":
            data = b"\0" * 1001
        elif case == "expired":
            clock.now = form.expires_at
        elif case == "tampered_policy":
            fields["policy"] = other.fields["policy"]
        elif case == "tampered_signature":
            fields["signature"] = fields["signature"][:-2] + "AA"
        elif case == "empty":
            data = b""
        with pytest.raises(error):
            await upload(media, replace(form, fields=fields), data, 300)
        assert await media.wait_idle(5)
    finally:
        await media.close()
    assert files_under(root) == []
    assert ledger.changes == []


async def test_a_form_uploads_once(tmp_path: Path, ledger: MemoryLedger, clock: Clock) -> None:
    media = local_media(tmp_path / "media", ledger, clock, moderation="hold")
    form = await media.upload_form("alice", "vid1", "video/mp4", 10, BASE)
    await media.start()
    await media.close()  # no workers: the job waits in .jobs
    await upload(media, form, b"0123456789")
    with pytest.raises(UploadRefused, match="used already"):
        await upload(media, form, b"9876543210")
    assert files_under(tmp_path / "media") == [".jobs/vid1.json", "users/alice/uploads/vid1.mp4"]
    assert (tmp_path / "media/users/alice/uploads/vid1.mp4").read_bytes() == b"0123456789"


async def test_form_requests_are_checked(
    tmp_path: Path, ledger: MemoryLedger, clock: Clock
) -> None:
    media = local_media(tmp_path / "media", ledger, clock)
    with pytest.raises(UnsupportedType):
        await media.upload_form("alice", "vid1", "image/png", 10, BASE)
    with pytest.raises(UploadTooLarge):
        await media.upload_form("alice", "vid1", "video/mp4", 10 * 1024 * 1024 + 1, BASE)
    with pytest.raises(ValueError, match="owner"):
        await media.upload_form("../etc", "vid1", "video/mp4", 10, BASE)
    form = await media.upload_form("alice", "v", "Video/QuickTime", 10, BASE)
    assert (form.key, form.content_type) == ("users/alice/uploads/v.mov", "video/quicktime")


async def test_jobs_survive_a_restart_and_hold_waits_for_review(
    tmp_path: Path, clip_bytes: bytes, ledger: MemoryLedger, clock: Clock
) -> None:
    root = tmp_path / "media"
    ledger.add("vid1", "alice")
    first = local_media(root, ledger, clock, moderation="hold")
    await first.start()
    await first.close()
    form = await first.upload_form("alice", "vid1", "video/mp4", len(clip_bytes), BASE)
    await upload(first, form, clip_bytes)
    assert ledger.changes == []

    second = local_media(root, ledger, clock, moderation="hold")
    await second.start()
    try:
        assert await second.wait_idle(60)
    finally:
        await second.close()
    assert ledger.states("vid1") == ["processing", "moderating"]
    assert ledger.changes[-1].to_dict() == {
        "type": "video_state",
        "video_id": "vid1",
        "state": "moderating",
        "reason": "waiting for review",
        "renditions": ["72p", "96p", "144p"],
        "review": "pending",
    }
    assert (root / "videos/alice/vid1/master.m3u8").is_file()


async def test_worker_refuses_a_key_outside_the_owners_prefix(
    tmp_path: Path, clip_bytes: bytes, ledger: MemoryLedger, clock: Clock
) -> None:
    root = tmp_path / "media"
    ledger.add("vid1", "alice")
    media = local_media(root, ledger, clock)
    await media.start()
    try:
        # A form signed for mallory's folder but naming alice's video: never processed.
        form = await media.upload_form("mallory", "vid1", "video/mp4", len(clip_bytes), BASE)
        await upload(media, form, clip_bytes)
        assert await media.wait_idle(30)
    finally:
        await media.close()
    assert ledger.changes == []
    assert not (root / "videos/alice").exists()
    assert not (root / "videos/mallory").exists()
    assert files_under(root / ".jobs") == []


async def test_not_a_video_fails_with_a_reason(
    tmp_path: Path, ledger: MemoryLedger, clock: Clock
) -> None:
    ledger.add("vid1", "alice")
    media = local_media(tmp_path / "media", ledger, clock)
    await media.start()
    try:
        form = await media.upload_form("alice", "vid1", "video/mp4", 4096, BASE)
        await upload(media, form, b"not a video at all " * 200)
        assert await media.wait_idle(30)
    finally:
        await media.close()
    assert ledger.states("vid1") == ["processing", "failed"]
    assert ledger.changes[-1].reason == "the upload is not a video ffmpeg can read"
    assert ledger.changes[-1].detail == {"code": "not_a_video"}
    assert files_under(tmp_path / "media" / ".work") == []


async def test_too_long_videos_are_rejected(
    tmp_path: Path, clip_bytes: bytes, ledger: MemoryLedger, clock: Clock
) -> None:
    ledger.add("vid1", "alice")
    media = local_media(tmp_path / "media", ledger, clock, max_seconds=2.0)
    await media.start()
    try:
        form = await media.upload_form("alice", "vid1", "video/mp4", len(clip_bytes), BASE)
        await upload(media, form, clip_bytes)
        assert await media.wait_idle(30)
    finally:
        await media.close()
    assert ledger.states("vid1") == ["processing", "rejected"]
    assert ledger.changes[-1].reason == "videos are at most 2 seconds long"
    assert ledger.changes[-1].detail == {"code": "too_long"}


async def test_a_job_interrupted_after_moderating_resumes(
    tmp_path: Path, ledger: MemoryLedger, clock: Clock
) -> None:
    root = tmp_path / "media"
    first = local_media(root, ledger, clock)
    await first.start()
    await first.close()
    form = await first.upload_form("alice", "vid1", "video/mp4", 10, BASE)
    await upload(first, form, b"0123456789")
    # The previous run recorded moderating, then stopped before ready.
    ledger.add("vid1", "alice", VideoState.MODERATING)
    second = local_media(root, ledger, clock)
    await second.start()
    try:
        assert await second.wait_idle(10)
    finally:
        await second.close()
    assert ledger.states("vid1") == ["ready"]
    assert files_under(root / ".jobs") == []
