"""The embedded backend: a folder on disk, gateway-signed forms and links, ffmpeg.

Uploads come to the gateway's own endpoint as a multipart form shaped like an S3 presigned
POST. :meth:`LocalMedia.check_form` verifies the signed policy from the form's fields, before a
single byte of the file is read; :meth:`LocalMedia.receive` then streams the file into a
private temporary file in bounded chunks, stops at the policy's byte limit, and only a complete
upload is moved (exclusively: one upload per form) to its key. A refused upload leaves nothing.

Each finished upload leaves a job file in ``.jobs/`` before it is queued, so a job survives a
restart: :meth:`LocalMedia.start` queues every job file it finds. Workers (``workers`` at once)
run ffmpeg (:mod:`media.ffmpeg`) and record each change of state through the :class:`Ledger`.

Playback links carry their signature as a path prefix (``/v1/media/play/{token}/master.m3u8``),
so the playlists' relative links resolve under the same token: no cookies, no rewriting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import orjson

from media.errors import (
    LinkInvalid,
    MediaRejected,
    TranscodeFailed,
    UploadRefused,
    UploadTooLarge,
)
from media.ffmpeg import Limits, find_ffmpeg, probe, transcode
from media.keys import extension_for, parse_upload_key, upload_key, video_prefix
from media.model import (
    DEFAULT_LADDER,
    DEFAULT_WATERMARK,
    Change,
    Ledger,
    Playback,
    Rung,
    UploadForm,
    VideoRef,
    VideoState,
)
from media.signing import Signer, UploadPolicy

log = logging.getLogger(__name__)

UPLOAD_PATH = "/v1/media/uploads/local"
PLAY_PATH = "/v1/media/play"
WRITE_CHUNK = 1024 * 1024
"""Bytes of an upload held in memory before they are written out (per upload)."""

CONTENT_TYPES = {"m3u8": "application/vnd.apple.mpegurl", "ts": "video/mp2t", "jpg": "image/jpeg"}
_SERVED = re.compile(r"(?:[A-Za-z0-9_-]{1,64}/)?[A-Za-z0-9_-]{1,64}\.(m3u8|ts|jpg)")


@dataclass(frozen=True, slots=True)
class LocalConfig:
    root: Path
    signer: Signer
    max_upload_bytes: int = 256 * 1024 * 1024
    upload_ttl: int = 900
    playback_ttl: int = 900
    ladder: tuple[Rung, ...] = DEFAULT_LADDER
    segment_seconds: int = 4
    max_seconds: float = 300.0
    max_dimension: int = 4096
    max_pixels: int = 4096 * 4096
    ffmpeg_memory_bytes: int = 2 * 1024**3
    ffmpeg_cpu_seconds: int = 3600
    ffmpeg_threads: int = 2
    moderation: Literal["allow", "hold"] = "allow"
    workers: int = 1
    ffmpeg: str | None = None
    watermark: Path = DEFAULT_WATERMARK
    transcode_timeout: float = 1800.0
    clock: Callable[[], float] = field(default=time.time)

    @property
    def limits(self) -> Limits:
        return Limits(
            max_seconds=self.max_seconds,
            max_dimension=self.max_dimension,
            max_pixels=self.max_pixels,
            memory_bytes=self.ffmpeg_memory_bytes,
            cpu_seconds=self.ffmpeg_cpu_seconds,
            threads=self.ffmpeg_threads,
        )


@dataclass(frozen=True, slots=True)
class Served:
    """A file a playback link may read."""

    path: Path
    content_type: str
    expires_at: int


class UploadSink:
    """One upload being written: bounded by its policy, nothing kept unless committed."""

    def __init__(self, media: LocalMedia, policy: UploadPolicy) -> None:
        self._media = media
        self.policy = policy
        self.size = 0
        self._buffer = bytearray()
        incoming = media.root / ".incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        self._temp = incoming / f"{uuid.uuid4().hex}.part"
        self._file = self._temp.open("xb")
        self._done = False

    async def write(self, chunk: bytes) -> None:
        """Take the next bytes; raise UploadTooLarge past the policy's limit."""
        self.size += len(chunk)
        if self.size > self.policy.max_bytes:
            raise UploadTooLarge(
                f"the upload is larger than its form allows ({self.policy.max_bytes} bytes)"
            )
        self._buffer += chunk
        if len(self._buffer) >= WRITE_CHUNK:
            data, self._buffer = bytes(self._buffer), bytearray()
            await asyncio.to_thread(self._file.write, data)

    async def commit(self) -> None:
        """Put the complete upload at its key and queue its job; refuse an empty or reused form."""
        if self.size == 0:
            raise UploadRefused("the upload is empty")
        data, self._buffer = bytes(self._buffer), bytearray()
        await asyncio.to_thread(self._finish, data)
        self._done = True
        self._media.enqueue(self.policy.video_id)

    def _finish(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        media = self._media
        target = media.root / self.policy.key
        target.parent.mkdir(parents=True, exist_ok=True)
        media.jobs.mkdir(exist_ok=True)
        job = media.jobs / f"{self.policy.video_id}.json"
        try:
            # link() fails when the key exists: a form uploads once, never over an earlier file.
            os.link(self._temp, target)
        except FileExistsError:
            raise UploadRefused("this upload form was used already") from None
        finally:
            self._temp.unlink(missing_ok=True)
        pending = job.with_suffix(".tmp")
        pending.write_bytes(orjson.dumps({"key": self.policy.key}))
        pending.replace(job)

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._temp.unlink(missing_ok=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._done:
            self.abort()


class LocalMedia:
    """Folder + ffmpeg backend (see the module docstring)."""

    name = "local"

    def __init__(self, config: LocalConfig, ledger: Ledger) -> None:
        self.config = config
        self.ledger = ledger
        self.root = config.root
        self.jobs = config.root / ".jobs"
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._ffmpeg = ""
        self.idle = asyncio.Event()
        """Set while no job is queued or running (tests and shutdown wait on it)."""
        self.idle.set()
        self._running = 0
        self.refused = 0
        """Jobs refused because the key is not the upload of its video's owner (for metrics)."""
        self.observe_transcode: Callable[[float, str], None] | None = None
        """Called with (seconds, outcome) after each transcode: ``ok``, ``rejected`` (past a
        limit) or ``failed``; the probe, the ffmpeg run and moving the outputs into place."""

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._ffmpeg = find_ffmpeg(self.config.ffmpeg)
        for video_id in await asyncio.to_thread(self._prepare):
            self.enqueue(video_id)
        self._tasks = [
            asyncio.create_task(self._work(), name=f"media-worker-{i}")
            for i in range(self.config.workers)
        ]

    def _prepare(self) -> list[str]:
        """Check the watermark, clean up after a previous run; return the jobs it left."""
        if not self.config.watermark.is_file():
            raise FileNotFoundError(f"watermark image {self.config.watermark} does not exist")
        # Folders are made by the first upload, so a node that never sees one writes nothing.
        # Partial uploads and half-made outputs of a previous run are never finished: drop them.
        incoming, work = self.root / ".incoming", self.root / ".work"
        for leftover in incoming.iterdir() if incoming.is_dir() else ():
            leftover.unlink(missing_ok=True)
        for leftover in work.iterdir() if work.is_dir() else ():
            shutil.rmtree(leftover, ignore_errors=True)
        return sorted(job.stem for job in self.jobs.glob("*.json")) if self.jobs.is_dir() else []

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # -- uploads ---------------------------------------------------------------------------

    async def upload_form(
        self, owner: str, video_id: str, content_type: str, size: int, base_url: str
    ) -> UploadForm:
        limit = self.config.max_upload_bytes
        if size > limit:
            raise UploadTooLarge(f"uploads are at most {limit} bytes")
        key = upload_key(owner, video_id, content_type)
        content_type = content_type.strip().lower()
        expires_at = int(self.config.clock()) + self.config.upload_ttl
        policy, signature = self.config.signer.sign_policy(
            UploadPolicy(key.key, content_type, size, expires_at, owner, video_id)
        )
        fields = {
            "key": key.key,
            "Content-Type": content_type,
            "policy": policy,
            "signature": signature,
        }
        return UploadForm(base_url + UPLOAD_PATH, fields, key.key, content_type, size, expires_at)

    def check_form(self, fields: Mapping[str, str]) -> UploadPolicy:
        """Verify a form's fields against its signed policy, before any file byte is read."""
        policy = self.config.signer.verify_policy(
            fields.get("policy", ""), fields.get("signature", ""), self.config.clock()
        )
        if fields.get("key") != policy.key:
            raise UploadRefused("the key is not the one the form was signed for")
        if fields.get("Content-Type", "").strip().lower() != policy.content_type:
            raise UploadRefused("the content type is not the one the form was signed for")
        parsed = parse_upload_key(policy.key)
        if parsed is None or parsed.owner != policy.owner or parsed.video_id != policy.video_id:
            raise UploadRefused("the key is outside the owner's upload folder")
        if extension_for(policy.content_type) != parsed.ext:
            raise UploadRefused("the key's extension does not match the content type")
        return policy

    def receive(self, policy: UploadPolicy) -> UploadSink:
        """Start writing the upload a checked policy allows (use with ``async with``)."""
        return UploadSink(self, policy)

    # -- playback --------------------------------------------------------------------------

    async def playback(self, owner: str, video_id: str, base_url: str) -> Playback:
        expires_at = int(self.config.clock()) + self.config.playback_ttl
        token = self.config.signer.sign_playback(owner, video_id, expires_at)
        base = f"{base_url}{PLAY_PATH}/{token}/"
        return Playback(video_id, base + "master.m3u8", base + "thumb.jpg", expires_at)

    def resolve(self, token: str, path: str) -> Served:
        """Return the file a playback link points at; FileNotFoundError when there is none."""
        owner, video_id = self.config.signer.verify_playback(token, self.config.clock())
        found = _SERVED.fullmatch(path)
        if found is None:
            raise LinkInvalid("no such file in a video")
        target = self.root / video_prefix(owner, video_id) / path
        if not target.is_file() or target.is_symlink():
            raise FileNotFoundError(path)
        expires = int(token.split(".")[2])
        return Served(target, CONTENT_TYPES[found[1]], expires)

    # -- the worker ------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Jobs waiting or running on this node."""
        return len(self._queued)

    def enqueue(self, video_id: str) -> None:
        if video_id not in self._queued:
            self._queued.add(video_id)
            self.idle.clear()
            self._queue.put_nowait(video_id)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued job is done; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                await self.idle.wait()
        except TimeoutError:
            return False
        return True

    async def _work(self) -> None:
        while True:
            video_id = await self._queue.get()
            self._running += 1
            try:
                await self.process(video_id)
            except Exception:
                # The job file stays: the next start retries it. Nothing else is lost.
                log.exception(
                    "media job for video %s failed; it is retried at next start", video_id
                )
            finally:
                self._queued.discard(video_id)
                self._running -= 1
                if not self._queued and self._running == 0:
                    self.idle.set()

    async def process(self, video_id: str) -> None:
        """Run one job to its end: check the owner, transcode, moderate; record each step."""
        job = self.jobs / f"{video_id}.json"
        try:
            key = str(orjson.loads(await asyncio.to_thread(job.read_bytes))["key"])
        except FileNotFoundError:
            return
        parsed = parse_upload_key(key)
        video = await self.ledger.get(video_id)
        if (
            parsed is None
            or video is None
            or video.owner != parsed.owner
            or parsed.video_id != video_id
        ):
            # Checked before anything else: a key outside the video owner's prefix is never read.
            self.refused += 1
            log.warning(
                "refused media job %s: key %r is not the upload of that video's owner",
                video_id,
                key,
            )
            await asyncio.to_thread(job.unlink, missing_ok=True)
            return
        # Each step starts from the recorded state, so a job interrupted anywhere (a restart)
        # resumes where it stopped, and a video that moved on is left alone.
        if video is not None and video.state is VideoState.UPLOADING:
            video = await self._advance(video, VideoState.PROCESSING)
        if video is not None and video.state is VideoState.PROCESSING:
            video = await self._convert(video, key)
        if (
            video is not None
            and video.state is VideoState.MODERATING
            and self.config.moderation == "allow"
        ):
            await self._advance(video, VideoState.READY, detail={"moderation": "unmoderated"})
        await asyncio.to_thread(job.unlink, missing_ok=True)

    async def _convert(self, video: VideoRef, key: str) -> VideoRef | None:
        """Transcode, then record ``moderating`` (or ``rejected`` past a limit, or ``failed``)."""
        started = time.monotonic()
        try:
            renditions = await self._transcode(video, self.root / key)
        except TranscodeFailed as exc:
            rejected = isinstance(exc, MediaRejected)
            self._observe(started, "rejected" if rejected else "failed")
            state = VideoState.REJECTED if rejected else VideoState.FAILED
            await self._advance(video, state, reason=str(exc), detail={"code": exc.code})
            return None
        self._observe(started, "ok")
        held = self.config.moderation == "hold"
        detail: dict[str, object] = {"renditions": renditions}
        if held:
            detail["review"] = "pending"
        return await self._advance(
            video,
            VideoState.MODERATING,
            reason="waiting for review" if held else None,
            detail=detail,
        )

    def _observe(self, started: float, outcome: str) -> None:
        if self.observe_transcode is not None:
            self.observe_transcode(time.monotonic() - started, outcome)

    async def _advance(
        self,
        video: VideoRef,
        state: VideoState,
        *,
        reason: str | None = None,
        detail: Mapping[str, object] | None = None,
    ) -> VideoRef | None:
        change = Change(video.id, video.owner, video.state, state, reason, dict(detail or {}))
        if not await self.ledger.record(change):
            log.info("video %s moved on before %s; job stopped", video.id, state.value)
            return None
        return VideoRef(video.id, video.owner, state)

    async def _transcode(self, video: VideoRef, source: Path) -> list[str]:
        limits = self.config.limits
        # Refuses what the probe shows is too large or says is too long, before decoding.
        info = await probe(self._ffmpeg, source, limits)
        work = self.root / ".work" / f"{video.id}-{uuid.uuid4().hex[:8]}"
        final = self.root / video_prefix(video.owner, video.id)
        await asyncio.to_thread(work.mkdir, parents=True)
        try:
            rungs = await transcode(
                self._ffmpeg,
                source,
                work,
                info,
                self.config.ladder,
                segment_seconds=self.config.segment_seconds,
                watermark=self.config.watermark,
                timeout=self.config.transcode_timeout,
                limits=limits,
            )
            await asyncio.to_thread(_publish_dir, work, final)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, ignore_errors=True)
        return [rung.name for rung in rungs]


def _publish_dir(work: Path, final: Path) -> None:
    """Move finished outputs into place, replacing what an interrupted earlier run left."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        shutil.rmtree(final)
    work.rename(final)
