"""The MediaConvert job template: HLS ladder, thumbnail frames and the watermark, in one job.

:func:`job_request` builds the ``CreateJob`` request for one upload; docs/media.md shows it.
Outputs land next to each other under ``videos/{owner}/{id}/``:

- ``master.m3u8`` — the HLS master playlist; ``master_{rung}.m3u8`` and
  ``master_{rung}_NNNNN.ts`` — one playlist and its segments per rung (H.264 QVBR, capped at the
  rung's bitrate; AAC stereo 96 kbit/s; key frame every segment);
- ``thumbs/thumb.NNNNNNN.jpg`` — one frame every ``FRAME_EVERY`` seconds (at most
  ``MAX_FRAMES``): the first is the thumbnail, all of them are what Rekognition checks;
- the watermark (a PNG in the bucket) is inserted on every rendition, top left, as wide as 30 %
  of the rendition's height — the same place and size the local ffmpeg pipeline uses.

``UserMetadata`` carries the video id and owner, so the job's completion event (EventBridge →
the worker's SQS queue) names its video without a lookup, and the time the job was submitted
(``submitted_ms``, ms since the epoch), so whichever worker gets the event can time the
transcode.
"""

from __future__ import annotations

from typing import Any

from media.model import Rung

AUDIO_BITRATE = 96_000
FRAME_EVERY = 2
MAX_FRAMES = 10


def _watermark(rung: Rung, image_uri: str, image_size: tuple[int, int]) -> dict[str, Any]:
    # Renditions are set by height (MediaConvert keeps the aspect ratio for the width); the
    # image is sized from it, and ImageX/ImageY are pixels from the top left corner.
    width = max(2, round(rung.height * 0.3 / 2) * 2)
    height = max(2, round(width * image_size[1] / image_size[0]))
    margin = max(2, rung.height // 30)
    return {
        "ImageInserter": {
            "InsertableImages": [
                {
                    "ImageInserterInput": image_uri,
                    "ImageX": margin,
                    "ImageY": margin,
                    "Width": width,
                    "Height": height,
                    "Layer": 1,
                    "Opacity": 90,
                }
            ]
        }
    }


def _rendition(
    rung: Rung, segment_seconds: int, watermark_uri: str, image_size: tuple[int, int]
) -> dict[str, Any]:
    return {
        "NameModifier": f"_{rung.name}",
        "ContainerSettings": {"Container": "M3U8", "M3u8Settings": {}},
        "VideoDescription": {
            "Height": rung.height,
            "ScalingBehavior": "DEFAULT",
            "AntiAlias": "ENABLED",
            "VideoPreprocessors": _watermark(rung, watermark_uri, image_size),
            "CodecSettings": {
                "Codec": "H_264",
                "H264Settings": {
                    "RateControlMode": "QVBR",
                    "MaxBitrate": rung.video_kbps * 1000,
                    "QvbrSettings": {"QvbrQualityLevel": 7},
                    "CodecProfile": "MAIN",
                    "GopSize": float(segment_seconds),
                    "GopSizeUnits": "SECONDS",
                    "SceneChangeDetect": "TRANSITION_DETECTION",
                },
            },
        },
        "AudioDescriptions": [
            {
                "AudioSourceName": "Audio Selector 1",
                "CodecSettings": {
                    "Codec": "AAC",
                    "AacSettings": {
                        "Bitrate": AUDIO_BITRATE,
                        "CodingMode": "CODING_MODE_2_0",
                        "SampleRate": 48000,
                    },
                },
            }
        ],
    }


def job_request(
    *,
    role_arn: str,
    queue_arn: str | None,
    input_uri: str,
    output_prefix: str,
    ladder: tuple[Rung, ...],
    segment_seconds: int,
    watermark_uri: str,
    watermark_size: tuple[int, int],
    video_id: str,
    owner: str,
    submitted_ms: int,
) -> dict[str, Any]:
    """Return the ``CreateJob`` parameters for one upload (``output_prefix`` ends with ``/``)."""
    hls = {
        "Name": "HLS",
        "OutputGroupSettings": {
            "Type": "HLS_GROUP_SETTINGS",
            "HlsGroupSettings": {
                "Destination": output_prefix + "master",
                "SegmentLength": segment_seconds,
                "MinSegmentLength": 0,
                "SegmentControl": "SEGMENTED_FILES",
                "DirectoryStructure": "SINGLE_DIRECTORY",
                "ManifestDurationFormat": "INTEGER",
                "OutputSelection": "MANIFESTS_AND_SEGMENTS",
                "StreamInfResolution": "INCLUDE",
                "ClientCache": "ENABLED",
                "CodecSpecification": "RFC_4281",
            },
        },
        "Outputs": [
            _rendition(rung, segment_seconds, watermark_uri, watermark_size) for rung in ladder
        ],
    }
    frames = {
        "Name": "Thumbnails",
        "OutputGroupSettings": {
            "Type": "FILE_GROUP_SETTINGS",
            "FileGroupSettings": {"Destination": output_prefix + "thumbs/thumb"},
        },
        "Outputs": [
            {
                "ContainerSettings": {"Container": "RAW"},
                "VideoDescription": {
                    "Height": ladder[-1].height,
                    "ScalingBehavior": "DEFAULT",
                    "CodecSettings": {
                        "Codec": "FRAME_CAPTURE",
                        "FrameCaptureSettings": {
                            "FramerateNumerator": 1,
                            "FramerateDenominator": FRAME_EVERY,
                            "MaxCaptures": MAX_FRAMES,
                            "Quality": 80,
                        },
                    },
                },
            }
        ],
    }
    request: dict[str, Any] = {
        "Role": role_arn,
        "UserMetadata": {"video_id": video_id, "owner": owner, "submitted_ms": str(submitted_ms)},
        "StatusUpdateInterval": "SECONDS_60",
        "Settings": {
            "TimecodeConfig": {"Source": "ZEROBASED"},
            "Inputs": [
                {
                    "FileInput": input_uri,
                    "TimecodeSource": "ZEROBASED",
                    "VideoSelector": {"Rotate": "AUTO"},
                    "AudioSelectors": {"Audio Selector 1": {"DefaultSelection": "DEFAULT"}},
                }
            ],
            "OutputGroups": [hls, frames],
        },
    }
    if queue_arn:
        request["Queue"] = queue_arn
    return request


def thumbnail_key(output_prefix: str) -> str:
    """The first captured frame: the video's thumbnail."""
    return output_prefix + "thumbs/thumb.0000000.jpg"


def png_size(data: bytes) -> tuple[int, int]:
    """Return (width, height) of a PNG image from its header."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("the watermark must be a PNG image")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
