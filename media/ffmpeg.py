"""The local transcoder: one ffmpeg run makes the HLS ladder, the thumbnail and the watermark.

:func:`probe` reads what ffmpeg says about the upload (is it a video, its display size after
rotation, its length, whether it has sound). :func:`plan` turns that into one command whose
filter graph scales the source to the top rung, burns the watermark in (top left, as wide as 30 %
of the height, the same place and size the MediaConvert template uses), splits it into the three
renditions and a thumbnail frame, and writes ``master.m3u8``, ``{rung}/index.m3u8`` with
``{rung}/seg_NNN.ts`` segments, and ``thumb.jpg``. Every segment starts with a key frame
(forced every ``segment_seconds``), so renditions switch cleanly.

ffmpeg runs as a child process with bounded output capture and a time limit; it is killed if
the job is cancelled (shutdown), so no orphan keeps burning CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

from media.errors import TranscodeFailed
from media.model import Rung

log = logging.getLogger(__name__)

AUDIO_KBPS = 96
THUMB_AT = 1.0
"""Seconds into the video of the thumbnail frame (earlier for shorter videos)."""

_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #0:\d+[^:]*: Video: [^\n]*?, (\d{2,5})x(\d{2,5})")
_AUDIO = re.compile(r"Stream #0:\d+[^:]*: Audio: ")
_ROTATION = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees")


def find_ffmpeg(configured: str | None = None) -> str:
    """Return the ffmpeg to run: the configured one, else the static build of imageio-ffmpeg."""
    if configured:
        return configured
    import imageio_ffmpeg  # only the local backend needs it, so import it late

    return str(imageio_ffmpeg.get_ffmpeg_exe())


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What the upload is, as displayed (rotation applied)."""

    width: int
    height: int
    duration: float
    has_audio: bool


def parse_probe(text: str) -> SourceInfo:
    """Read ffmpeg's description of an input; raise TranscodeFailed when it is not a video."""
    video = _VIDEO.search(text)
    if video is None:
        raise TranscodeFailed("the upload is not a video ffmpeg can read")
    width, height = int(video[1]), int(video[2])
    rotation = _ROTATION.search(text)
    if rotation is not None and round(abs(float(rotation[1]))) % 180 == 90:
        width, height = height, width
    duration = 0.0
    found = _DURATION.search(text)
    if found is not None:
        duration = int(found[1]) * 3600 + int(found[2]) * 60 + float(found[3])
    if duration <= 0:
        raise TranscodeFailed("the upload has no duration (not a finished video file)")
    return SourceInfo(width, height, duration, _AUDIO.search(text) is not None)


async def _run(args: list[str], timeout: float) -> tuple[int, str]:
    """Run a command; return its exit status and the last 8 KiB of its stderr."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    tail = bytearray()

    async def drain() -> None:
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(65536):
            tail.extend(chunk)
            del tail[:-8192]

    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(drain(), proc.wait())
    except BaseException:
        # Timeout or cancellation (shutdown): never leave the child running.
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.shield(proc.wait())
        raise
    return proc.returncode or 0, tail.decode("utf-8", "replace")


async def probe(ffmpeg: str, source: Path, *, timeout: float = 60.0) -> SourceInfo:
    """Describe ``source``; raise TranscodeFailed when ffmpeg cannot read a video from it."""
    _status, text = await _run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(source)], timeout)
    return parse_probe(text)


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def rendition_size(info: SourceInfo, height: int) -> tuple[int, int]:
    """Return the (width, height) of a rendition ``height`` pixels high (aspect kept).

    A rung is the output's height on both backends (MediaConvert's ``Height`` with the width
    left blank does the same), whatever the orientation of the source.
    """
    return _even(info.width * height / info.height), height


def usable_rungs(info: SourceInfo, ladder: tuple[Rung, ...]) -> tuple[Rung, ...]:
    """Drop rungs taller than the source (never upscale); the lowest rung always stays."""
    kept = tuple(r for r in ladder if r.height <= info.height)
    return kept or ladder[:1]


@dataclass(frozen=True, slots=True)
class Plan:
    args: list[str]
    rungs: tuple[Rung, ...]


def plan(
    ffmpeg: str,
    source: Path,
    out: Path,
    info: SourceInfo,
    ladder: tuple[Rung, ...],
    *,
    segment_seconds: int,
    watermark: Path,
) -> Plan:
    """Build the one ffmpeg command that writes every output of a video into ``out``."""
    rungs = usable_rungs(info, ladder)
    top_w, top_h = rendition_size(info, rungs[-1].height)
    # Sized and placed from the height, as the MediaConvert template does for each rendition.
    wm_width = _even(top_h * 0.3)
    margin = max(2, top_h // 30)
    count = len(rungs)
    splits = "".join(f"[s{i}]" for i in range(count + 1))
    graph = [
        f"[1:v]scale={wm_width}:-2,format=rgba[wm]",
        f"[0:v]scale={top_w}:{top_h},setsar=1[base]",
        f"[base][wm]overlay={margin}:{margin},split={count + 1}{splits}",
    ]
    for i, rung in enumerate(rungs):
        w, h = rendition_size(info, rung.height)
        graph.append(
            f"[s{i}]scale={w}:{h}[v{i}]" if (w, h) != (top_w, top_h) else f"[s{i}]null[v{i}]"
        )
    thumb_at = min(THUMB_AT, info.duration / 3)
    graph.append(f"[s{count}]select='gte(t,{thumb_at:.3f})'[th]")

    args = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    args += ["-i", str(source), "-i", str(watermark), "-filter_complex", ";".join(graph)]
    streams = []
    for i in range(count):
        args += ["-map", f"[v{i}]"]
        if info.has_audio:
            args += ["-map", "0:a:0"]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-pix_fmt", "yuv420p"]
    for i, rung in enumerate(rungs):
        kbps = rung.video_kbps
        args += [f"-b:v:{i}", f"{kbps}k", f"-maxrate:v:{i}", f"{math.ceil(kbps * 1.1)}k"]
        args += [f"-bufsize:v:{i}", f"{kbps * 2}k"]
        streams.append(
            f"v:{i},a:{i},name:{rung.name}" if info.has_audio else f"v:{i},name:{rung.name}"
        )
    args += ["-force_key_frames", f"expr:gte(t,n_forced*{segment_seconds})"]
    if info.has_audio:
        args += ["-c:a", "aac", "-b:a", f"{AUDIO_KBPS}k", "-ac", "2", "-ar", "48000"]
    args += ["-f", "hls", "-hls_time", str(segment_seconds), "-hls_playlist_type", "vod"]
    args += ["-hls_flags", "independent_segments", "-hls_segment_type", "mpegts"]
    args += ["-hls_segment_filename", str(out / "%v" / "seg_%03d.ts")]
    args += ["-master_pl_name", "master.m3u8", "-var_stream_map", " ".join(streams)]
    args += [str(out / "%v" / "index.m3u8")]
    args += ["-map", "[th]", "-frames:v", "1", "-q:v", "3", "-update", "1", str(out / "thumb.jpg")]
    return Plan(args, rungs)


async def transcode(
    ffmpeg: str,
    source: Path,
    out: Path,
    info: SourceInfo,
    ladder: tuple[Rung, ...],
    *,
    segment_seconds: int,
    watermark: Path,
    timeout: float,
) -> tuple[Rung, ...]:
    """Write every output of ``source`` into the empty folder ``out``; return the rungs made."""
    job = plan(
        ffmpeg, source, out, info, ladder, segment_seconds=segment_seconds, watermark=watermark
    )
    status, text = await _run(job.args, timeout)
    if status != 0:
        log.warning("ffmpeg failed (%d) on %s: %s", status, source, text.strip()[-2000:])
        raise TranscodeFailed("the video could not be converted")
    missing = [
        name
        for name in ["master.m3u8", "thumb.jpg", *(f"{r.name}/index.m3u8" for r in job.rungs)]
        if not (out / name).is_file()
    ]
    if missing:
        log.warning("ffmpeg left out %s for %s: %s", missing, source, text.strip()[-2000:])
        raise TranscodeFailed("the video could not be converted")
    return job.rungs
