"""The local transcoder: one ffmpeg run makes the HLS ladder, the thumbnail and the watermark.

:func:`probe` reads what ffmpeg says about the upload (is it a video, its display size after
rotation, its length, whether it has sound). :func:`plan` turns that into one command whose
filter graph scales the source to the top rung, burns the watermark in (top left, as wide as 30 %
of the height, the same place and size the MediaConvert template uses), splits it into the three
renditions and a thumbnail frame, and writes ``master.m3u8``, ``{rung}/index.m3u8`` with
``{rung}/seg_NNN.ts`` segments, and ``thumb.jpg``. Every segment starts with a key frame
(forced every ``segment_seconds``), so renditions switch cleanly.

Nothing the container says is trusted (issue 21, finding 5). :class:`Limits` bounds a job:
the probe refuses a frame size over the limit before anything is decoded (and the decoders get
``-max_pixels``, so a stream that grows its frames later is refused frame by frame); decoding
is cut a little past the longest allowed duration (``-t`` on the input), and the length of what
was actually written (the HLS playlists' segment durations) decides "too long", not the header.
ffmpeg runs as a child process with bounded output capture, a time limit, bounded threads and
its own kernel limits (``RLIMIT_AS``, ``RLIMIT_CPU``, no core files): a file that needs more
memory or CPU than that makes ffmpeg fail, which is reported as ``resource_limit``. The child is
killed if the job is cancelled (shutdown), so no orphan keeps burning CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import resource
import signal
from dataclasses import dataclass
from pathlib import Path

from media.errors import (
    CONVERT_FAILED,
    CONVERT_TIMED_OUT,
    NOT_A_VIDEO,
    RESOURCE_LIMIT,
    TOO_LARGE,
    TOO_LONG,
    MediaRejected,
    TranscodeFailed,
)
from media.model import Rung

log = logging.getLogger(__name__)

AUDIO_KBPS = 96
THUMB_AT = 1.0
"""Seconds into the video of the thumbnail frame (earlier for shorter videos)."""

_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #0:\d+[^:]*: Video: [^\n]*?, (\d{2,5})x(\d{2,5})")
_AUDIO = re.compile(r"Stream #0:\d+[^:]*: Audio: ")
_ROTATION = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees")
_MAX_PIXELS = re.compile(r"Picture size \d+x\d+ exceeds specified max pixel count")
_EXTINF = re.compile(r"^#EXTINF:(\d+(?:\.\d+)?)", re.MULTILINE)
_OUT_OF_MEMORY = ("Cannot allocate memory", "Out of memory", "std::bad_alloc")
_LIMIT_SIGNALS = frozenset({signal.SIGXCPU, signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT})
"""How a child under RLIMIT_AS / RLIMIT_CPU ends when it hits them: SIGXCPU then SIGKILL for
CPU; for memory a failed allocation, which ffmpeg reports (ENOMEM) or, in code that does not
check, crashes on (SIGSEGV) or aborts (SIGABRT)."""

CUT_MARGIN = 1.0
"""Seconds decoded past the longest allowed video: enough to see that a stream goes on."""
LENGTH_TOLERANCE = 0.5
"""Seconds a written video may exceed the limit (the last frame's and audio frame's length)."""
PROBE_BYTES = 5_000_000
PROBE_MICROSECONDS = 5_000_000
"""What the probe may read to describe the streams (ffmpeg's defaults, pinned here)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one ffmpeg job may cost, whatever the file claims."""

    max_seconds: float = 300.0
    max_dimension: int = 4096
    """Widest and tallest frame (as stored, before rotation)."""
    max_pixels: int = 4096 * 4096
    """Largest frame, in pixels; also every decoder's ``max_pixels``."""
    memory_bytes: int = 2 * 1024**3
    """RLIMIT_AS of each ffmpeg child (address space, not resident memory)."""
    cpu_seconds: int = 3600
    """RLIMIT_CPU of each ffmpeg child (all its threads)."""
    threads: int = 2
    """Threads of each decoder, encoder and filter graph."""

    def describe(self) -> str:
        return (
            f"videos are at most {self.max_dimension} pixels wide and high"
            f" and {self.max_pixels} pixels a frame"
        )


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
        if _MAX_PIXELS.search(text):
            # The decoder refused the frame size, so the probe has no size to show.
            raise MediaRejected("the video's frames are larger than allowed", TOO_LARGE)
        raise TranscodeFailed("the upload is not a video ffmpeg can read", NOT_A_VIDEO)
    width, height = int(video[1]), int(video[2])
    rotation = _ROTATION.search(text)
    if rotation is not None and round(abs(float(rotation[1]))) % 180 == 90:
        width, height = height, width
    duration = 0.0
    found = _DURATION.search(text)
    if found is not None:
        duration = int(found[1]) * 3600 + int(found[2]) * 60 + float(found[3])
    if duration <= 0:
        raise TranscodeFailed("the upload has no duration (not a finished video file)", NOT_A_VIDEO)
    return SourceInfo(width, height, duration, _AUDIO.search(text) is not None)


def check_source(info: SourceInfo, limits: Limits) -> None:
    """Refuse, before decoding, a video the probe shows is too large or (by its header) too long."""
    if max(info.width, info.height) > limits.max_dimension or (
        info.width * info.height > limits.max_pixels
    ):
        raise MediaRejected(limits.describe(), TOO_LARGE)
    if info.duration > limits.max_seconds:
        raise MediaRejected(too_long(limits), TOO_LONG)


def too_long(limits: Limits) -> str:
    return f"videos are at most {limits.max_seconds:g} seconds long"


def _child_limits(limits: Limits) -> None:
    """Set the kernel's limits in the child, between fork and exec (only system calls here)."""
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    # SIGXCPU at the soft limit; the kernel kills with SIGKILL at the hard one if it is ignored.
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
    # A crash under the memory limit must not leave a core file of that size behind.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def hit_limit(status: int, text: str) -> bool:
    """Whether a failed ffmpeg run ended on its memory or CPU limit."""
    if status < 0 and -status in _LIMIT_SIGNALS:
        return True
    return any(marker in text for marker in _OUT_OF_MEMORY)


async def _run(args: list[str], timeout: float, limits: Limits) -> tuple[int, str]:
    """Run a command under ``limits``; return its exit status and the last 8 KiB of stderr.

    The status is negative (``-signal``) when the child was killed by a signal.
    """
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        # glibc reserves 64 MiB of address space for each thread's malloc arena; two arenas
        # keep RLIMIT_AS a bound on what the frames need, not on how many threads allocate.
        env={**os.environ, "MALLOC_ARENA_MAX": "2"},
        preexec_fn=lambda: _child_limits(limits),
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


def _decoding(limits: Limits) -> list[str]:
    """Input options bounding what decoding the next input may cost."""
    return [
        "-threads",
        str(limits.threads),
        "-max_pixels",
        str(limits.max_pixels),
        "-probesize",
        str(PROBE_BYTES),
        "-analyzeduration",
        str(PROBE_MICROSECONDS),
    ]


async def probe(
    ffmpeg: str, source: Path, limits: Limits = Limits(), *, timeout: float = 60.0
) -> SourceInfo:
    """Describe ``source`` and check it against ``limits`` (before decoding it).

    Raise MediaRejected when it is too large or says it is too long, TranscodeFailed when
    ffmpeg cannot read a video from it. The probe decodes a frame or two itself, so it runs
    under the same limits (and ``-max_pixels``) as the transcode.
    """
    args = [ffmpeg, "-hide_banner", "-nostdin", *_decoding(limits), "-i", str(source)]
    status, text = await _run_bounded(args, timeout, limits, source)
    if _VIDEO.search(text) is None and status != 0 and hit_limit(status, text):
        raise MediaRejected("the video needs more memory than a job may use", RESOURCE_LIMIT)
    info = parse_probe(text)
    check_source(info, limits)
    return info


async def _run_bounded(
    args: list[str], timeout: float, limits: Limits, source: Path
) -> tuple[int, str]:
    """:func:`_run`, with its time limit reported as a failure of the job."""
    try:
        return await _run(args, timeout, limits)
    except TimeoutError:
        log.warning("ffmpeg ran past %gs on %s; killed", timeout, source)
        raise TranscodeFailed("the video took too long to convert", CONVERT_TIMED_OUT) from None


def output_seconds(out: Path, rungs: tuple[Rung, ...]) -> float:
    """Length of what was written: the longest rendition's sum of segment durations."""
    longest = 0.0
    for rung in rungs:
        playlist = (out / rung.name / "index.m3u8").read_text("utf-8", "replace")
        longest = max(longest, sum(float(found) for found in _EXTINF.findall(playlist)))
    return longest


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
    limits: Limits = Limits(),
) -> Plan:
    """Build the one ffmpeg command that writes every output of a video into ``out``.

    Decoding stops ``CUT_MARGIN`` seconds past ``limits.max_seconds`` whatever the container
    says, so a stream longer than its header claims costs at most that much work, and the
    written length shows it (see :func:`transcode`).
    """
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
    args += [*_decoding(limits), "-t", f"{limits.max_seconds + CUT_MARGIN:g}", "-i", str(source)]
    args += ["-i", str(watermark), "-filter_complex", ";".join(graph)]
    args += ["-filter_complex_threads", str(limits.threads), "-threads", str(limits.threads)]
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
    limits: Limits = Limits(),
) -> tuple[Rung, ...]:
    """Write every output of ``source`` into the empty folder ``out``; return the rungs made.

    Raise MediaRejected when the decoded stream is longer than allowed (whatever the header
    said) or ffmpeg hit its memory or CPU limit; TranscodeFailed for any other failure. The
    caller removes ``out`` either way.
    """
    job = plan(
        ffmpeg,
        source,
        out,
        info,
        ladder,
        segment_seconds=segment_seconds,
        watermark=watermark,
        limits=limits,
    )
    status, text = await _run_bounded(job.args, timeout, limits, source)
    if status != 0:
        log.warning("ffmpeg failed (%d) on %s: %s", status, source, text.strip()[-2000:])
        if hit_limit(status, text):
            raise MediaRejected(
                "the video needs more memory or time than a job may use", RESOURCE_LIMIT
            )
        raise TranscodeFailed("the video could not be converted", CONVERT_FAILED)
    missing = [
        name
        for name in ["master.m3u8", "thumb.jpg", *(f"{r.name}/index.m3u8" for r in job.rungs)]
        if not (out / name).is_file()
    ]
    if missing:
        log.warning("ffmpeg left out %s for %s: %s", missing, source, text.strip()[-2000:])
        raise TranscodeFailed("the video could not be converted", CONVERT_FAILED)
    written = output_seconds(out, job.rungs)
    if written > limits.max_seconds + LENGTH_TOLERANCE:
        # The header said it was short enough (the probe checked); the stream went on.
        log.warning(
            "%s decodes to more than %gs (cut at %.2fs) though it says %.2fs; rejected",
            source,
            limits.max_seconds,
            written,
            info.duration,
        )
        raise MediaRejected(too_long(limits), TOO_LONG)
    return job.rungs
