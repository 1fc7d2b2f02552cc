"""Media pieces on their own: keys, signatures, the ladder, ffmpeg's description, the
MediaConvert template, the Lambda's configuration, the gateway's media settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import SettingsError, load_settings
from media.aws_lambda import config_from_env
from media.errors import LinkExpired, LinkInvalid, UnsupportedType, UploadRefused
from media.ffmpeg import SourceInfo, parse_probe, plan, rendition_size, usable_rungs
from media.keys import UploadKey, extension_for, parse_upload_key, upload_key, video_prefix
from media.mediaconvert import job_request, png_size, thumbnail_key
from media.model import (
    DEFAULT_LADDER,
    DEFAULT_WATERMARK,
    NEXT_STATES,
    Rung,
    VideoState,
    parse_ladder,
)
from media.signing import Signer, UploadPolicy, derive_key


def test_upload_keys_parse_only_inside_a_users_upload_folder() -> None:
    key = upload_key("U1", "V_2-x", "video/mp4")
    assert key.key == "users/U1/uploads/V_2-x.mp4"
    assert parse_upload_key(key.key) == UploadKey("U1", "V_2-x", "mp4")
    for bad in [
        "users/U1/uploads/V1.exe",
        "users/U1/uploads/../V1.mp4",
        "users/U1/uploads/a/V1.mp4",
        "users//uploads/V1.mp4",
        "videos/U1/V1/master.m3u8",
        "/users/U1/uploads/V1.mp4",
        "users/U1/uploads/V1.mp4/",
        "users/U1/Uploads/V1.mp4",
    ]:
        assert parse_upload_key(bad) is None, bad
    with pytest.raises(UnsupportedType):
        extension_for("video/x-flv")
    assert extension_for(" Video/QuickTime ") == "mov"
    with pytest.raises(ValueError, match="video id"):
        upload_key("U1", "a.b", "video/mp4")
    assert video_prefix("U1", "V1") == "videos/U1/V1/"


def test_upload_policy_signatures() -> None:
    signer = Signer(derive_key("s" * 32, "local"))
    policy = UploadPolicy("users/a/uploads/v.mp4", "video/mp4", 10, 2000, "a", "v")
    encoded, signature = signer.sign_policy(policy)
    assert signer.verify_policy(encoded, signature, 1999) == policy
    with pytest.raises(UploadRefused, match="expired"):
        signer.verify_policy(encoded, signature, 2000)
    other = Signer(derive_key("t" * 32, "local"))
    with pytest.raises(UploadRefused, match="signature"):
        other.verify_policy(encoded, signature, 0)
    with pytest.raises(UploadRefused):
        signer.verify_policy("", signature, 0)
    # A playback token is never accepted as an upload signature, nor the reverse.
    token = signer.sign_playback("a", "v", 2000)
    with pytest.raises(UploadRefused):
        signer.verify_policy("a.v.2000", token.rsplit(".", 1)[1], 0)
    # Any text in the client's fields is a mismatch, never a TypeError (a 500 once, found by
    # schemathesis): hmac.compare_digest refuses str with non-ASCII characters.
    for field in ["\x05\x1e\xc0K\x1d\xfb", "\udc80", "é" * 43]:
        with pytest.raises(UploadRefused, match="signature"):
            signer.verify_policy(encoded, field, 0)
        with pytest.raises(UploadRefused, match="signature"):
            signer.verify_policy(field, signature, 0)
    assert derive_key("s" * 32, "local") != derive_key("s" * 32, "other")
    with pytest.raises(ValueError, match="32"):
        Signer(b"short")


def test_playback_tokens() -> None:
    signer = Signer(b"p" * 32)
    token = signer.sign_playback("alice", "vid1", 5000)
    assert signer.verify_playback(token, 4999) == ("alice", "vid1")
    with pytest.raises(LinkExpired):
        signer.verify_playback(token, 5000)
    owner, video, expires, mac = token.split(".")
    for bad in [
        f"bob.{video}.{expires}.{mac}",
        f"{owner}.{video}.9999999999.{mac}",
        f"{owner}.{video}.{expires}",
        token + ".x",
        "",
        f"{owner}.{video}.{expires}.\xe9{mac[1:]}",
        f"{owner}.\udc80.{expires}.{mac}",
    ]:
        with pytest.raises(LinkInvalid):
            signer.verify_playback(bad, 0)


def test_ladder_and_states() -> None:
    assert parse_ladder("720:2800, 360:800,480:1400") == DEFAULT_LADDER
    for bad in [
        "360:800,480:1400",
        "360:800,480:1400,720",
        "361:800,480:1400,720:2800",
        "360:800,360:900,720:2800",
        "a:b,c:d,e:f",
        "8:800,480:1400,720:2800",
    ]:
        with pytest.raises(ValueError, match=r"."):
            parse_ladder(bad)
    assert [r.name for r in DEFAULT_LADDER] == ["360p", "480p", "720p"]
    assert NEXT_STATES[VideoState.UPLOADING] == {VideoState.PROCESSING, VideoState.FAILED}
    assert all(
        not NEXT_STATES[s] for s in (VideoState.READY, VideoState.REJECTED, VideoState.FAILED)
    )


PROBE = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'in.mov':
  Duration: 00:00:12.48, start: 0.000000, bitrate: 9000 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709, progressive), 1920x1080, 8500 kb/s, 30 fps, 30 tbr, 600 tbn (default)
      Side data:
        displaymatrix: rotation of -90.00 degrees
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp, 128 kb/s (default)
"""


def test_probe_reads_rotation_duration_and_audio() -> None:
    info = parse_probe(PROBE)
    assert info == SourceInfo(width=1080, height=1920, duration=12.48, has_audio=True)
    silent = parse_probe(
        PROBE.replace("rotation of -90.00", "rotation of 180.00").split("  Stream #0:1")[0]
    )
    assert silent == SourceInfo(1920, 1080, 12.48, False)
    with pytest.raises(Exception, match="not a video"):
        parse_probe("Input #0, wav\n  Duration: 00:00:01.00\n  Stream #0:0: Audio: pcm_s16le")
    with pytest.raises(Exception, match="duration"):
        parse_probe(PROBE.replace("00:00:12.48", "N/A"))


def test_renditions_keep_the_aspect_ratio_and_never_upscale() -> None:
    portrait = SourceInfo(1080, 1920, 10, True)
    assert rendition_size(portrait, 720) == (404, 720)
    assert rendition_size(SourceInfo(1920, 1080, 10, True), 360) == (640, 360)
    small = SourceInfo(640, 400, 10, True)
    assert usable_rungs(small, DEFAULT_LADDER) == DEFAULT_LADDER[:1]
    assert usable_rungs(SourceInfo(100, 100, 1, False), DEFAULT_LADDER) == DEFAULT_LADDER[:1]


def test_ffmpeg_plan_without_audio(tmp_path: Path) -> None:
    info = SourceInfo(1280, 720, 3, False)
    job = plan(
        "ffmpeg",
        tmp_path / "in.mp4",
        tmp_path,
        info,
        DEFAULT_LADDER,
        segment_seconds=4,
        watermark=DEFAULT_WATERMARK,
    )
    args = " ".join(job.args)
    assert "0:a:0" not in args
    assert "v:0,name:360p v:1,name:480p v:2,name:720p" in args
    assert "-hls_time 4" in args
    assert "expr:gte(t,n_forced*4)" in args
    assert "overlay=24:24" in args
    assert "scale=216:-2" in args  # 30 % of 720


def test_mediaconvert_template() -> None:
    request = job_request(
        role_arn="arn:role",
        queue_arn="arn:queue",
        input_uri="s3://b/users/u/uploads/v.mp4",
        output_prefix="s3://b/videos/u/v/",
        ladder=DEFAULT_LADDER,
        segment_seconds=4,
        watermark_uri="s3://b/brand/watermark.png",
        watermark_size=(240, 64),
        video_id="v",
        owner="u",
        submitted_ms=1_700_000_000_123,
    )
    assert request["Role"] == "arn:role"
    assert request["Queue"] == "arn:queue"
    assert request["UserMetadata"] == {
        "video_id": "v",
        "owner": "u",
        "submitted_ms": "1700000000123",
    }
    settings = request["Settings"]
    assert settings["Inputs"][0]["FileInput"] == "s3://b/users/u/uploads/v.mp4"
    hls, frames = settings["OutputGroups"]
    group = hls["OutputGroupSettings"]["HlsGroupSettings"]
    assert hls["OutputGroupSettings"]["Type"] == "HLS_GROUP_SETTINGS"
    assert (group["Destination"], group["SegmentLength"]) == ("s3://b/videos/u/v/master", 4)
    outputs = hls["Outputs"]
    assert [o["NameModifier"] for o in outputs] == ["_360p", "_480p", "_720p"]
    for output, rung in zip(outputs, DEFAULT_LADDER, strict=True):
        video = output["VideoDescription"]
        assert video["Height"] == rung.height
        h264 = video["CodecSettings"]["H264Settings"]
        assert h264["MaxBitrate"] == rung.video_kbps * 1000
        assert (h264["GopSize"], h264["GopSizeUnits"]) == (4.0, "SECONDS")
        image = video["VideoPreprocessors"]["ImageInserter"]["InsertableImages"][0]
        assert image["ImageInserterInput"] == "s3://b/brand/watermark.png"
        assert image["Width"] == round(rung.height * 0.3 / 2) * 2
        assert image["Height"] == round(image["Width"] * 64 / 240)
        assert (image["ImageX"], image["ImageY"]) == (rung.height // 30, rung.height // 30)
        audio = output["AudioDescriptions"][0]["CodecSettings"]
        assert audio["Codec"] == "AAC"
    capture = frames["Outputs"][0]["VideoDescription"]["CodecSettings"]
    assert capture["Codec"] == "FRAME_CAPTURE"
    assert (
        frames["OutputGroupSettings"]["FileGroupSettings"]["Destination"]
        == "s3://b/videos/u/v/thumbs/thumb"
    )
    assert thumbnail_key("videos/u/v/") == "videos/u/v/thumbs/thumb.0000000.jpg"
    assert png_size(DEFAULT_WATERMARK.read_bytes()) == (240, 64)
    with pytest.raises(ValueError, match="PNG"):
        png_size(b"GIF89a" + b"\0" * 30)


def test_lambda_configuration_from_the_gateways_variables() -> None:
    config = config_from_env(
        {
            "MOOSIC_MEDIA_BUCKET": "b",
            "MOOSIC_MEDIA_SQS_URL": "https://sqs/q",
            "MOOSIC_MEDIA_MEDIACONVERT_ROLE": "arn:role",
            "MOOSIC_MEDIA_LADDER": "240:300,360:600,720:2000",
            "MOOSIC_MAX_UPLOAD_BYTES": "1000",
        }
    )
    assert (config.bucket, config.queue_url, config.mediaconvert_role) == (
        "b",
        "https://sqs/q",
        "arn:role",
    )
    assert config.ladder == (Rung(240, 300), Rung(360, 600), Rung(720, 2000))
    assert config.max_upload_bytes == 1000


def test_media_settings(tmp_path: Path) -> None:
    base = {"MOOSIC_JWT_SECRET": "x" * 32}
    settings = load_settings({**base, "MOOSIC_MEDIA_LADDER": "240:300,360:600,720:2000"})
    assert settings.media.media_backend == "local"
    assert settings.media.media_ladder[0] == Rung(240, 300)
    with pytest.raises(SettingsError) as refused:
        load_settings({**base, "MOOSIC_MEDIA_BACKEND": "aws"})
    assert len(refused.value.problems) == 5
    assert "MOOSIC_MEDIA_BUCKET: required with MOOSIC_MEDIA_BACKEND=aws" in refused.value.problems
    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("hello")
    with pytest.raises(SettingsError) as refused:
        load_settings(
            {
                **base,
                "MOOSIC_CLOUDFRONT_PRIVATE_KEY_FILE": str(not_a_key),
                "MOOSIC_MEDIA_LADDER": "1:2",
                "MOOSIC_MEDIA_BUCKET": "Bad_Bucket",
                "MOOSIC_MEDIA_FFMPEG": str(tmp_path / "missing"),
            }
        )
    assert [p.split("=")[0] for p in refused.value.problems] == [
        "MOOSIC_MEDIA_LADDER",
        "MOOSIC_MEDIA_FFMPEG",
        "MOOSIC_MEDIA_BUCKET",
        "MOOSIC_CLOUDFRONT_PRIVATE_KEY_FILE",
    ]
