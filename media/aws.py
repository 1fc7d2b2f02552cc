"""The scale-out backend: S3 presigned POST, an SQS-fed worker, MediaConvert, Rekognition, CloudFront.

Flow for one video:

1. :meth:`AwsMedia.upload_form` signs an S3 presigned POST whose policy pins the exact key
   ``users/{owner}/uploads/{video_id}.{ext}``, the content type, a ``content-length-range`` up
   to the declared size (itself at most ``max_upload_bytes``) and a short expiry. S3 enforces it;
   the phone's bytes never pass through the gateway.
2. S3 notifies the queue (``s3:ObjectCreated:*`` on ``users/``). The worker
   (:meth:`AwsMedia.handle_message`) parses the key, checks that the video exists and that the
   key is in its owner's prefix, *then* reads the object's head (type, size) and creates the
   MediaConvert job (:mod:`media.mediaconvert`), recording ``processing``.
3. MediaConvert's completion event (EventBridge rule → the same queue) moves the video to
   ``moderating``; the worker asks Rekognition about each captured frame and records ``ready``
   or ``rejected`` (with the labels found), or ``failed`` on a transcoding error.
4. :meth:`AwsMedia.playback` signs CloudFront links for a ready video (:mod:`media.cloudfront`).

Messages are deleted only once handled, so a node that dies mid-way leaves its message to be
delivered again; every step checks the video's state first, so a repeat changes nothing.
Deployments that prefer Lambda for step 2 use :mod:`media.aws_lambda`, which submits the job
and reports it on the queue for the worker to record.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import orjson
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from media.cloudfront import CloudFrontSigner
from media.errors import CONVERT_FAILED, TOO_LONG, UploadTooLarge
from media.keys import CONTENT_TYPES, UploadKey, parse_upload_key, upload_key, video_prefix
from media.mediaconvert import MAX_FRAMES, job_request, png_size, thumbnail_key
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

log = logging.getLogger(__name__)

JOB_REPORT = "moosic.upload"
"""``type`` of the report :mod:`media.aws_lambda` puts on the queue after an upload."""

AWS_ERRORS = (ClientError, BotoCoreError)


@dataclass(frozen=True, slots=True)
class AwsConfig:
    bucket: str
    region: str = "us-east-1"
    queue_url: str | None = None
    """The SQS queue the worker polls; None runs no worker on this node."""
    endpoint_url: str | None = None
    """S3 and SQS endpoint (a local emulator in tests); None = AWS's own."""
    mediaconvert_endpoint: str | None = None
    mediaconvert_role: str = ""
    mediaconvert_queue: str | None = None
    watermark_key: str = "brand/watermark.png"
    watermark_file: Path = DEFAULT_WATERMARK
    cloudfront_domain: str = ""
    cloudfront_key_id: str = ""
    cloudfront_private_key: bytes = b""
    max_upload_bytes: int = 256 * 1024 * 1024
    upload_ttl: int = 900
    playback_ttl: int = 900
    ladder: tuple[Rung, ...] = DEFAULT_LADDER
    segment_seconds: int = 4
    max_seconds: float = 300.0
    min_confidence: float = 80.0
    sqs_wait: int = 20
    visibility_timeout: int = 300
    clock: Callable[[], float] = field(default=time.time)


@dataclass(frozen=True, slots=True)
class Submitted:
    """What became of an upload event: a job id, or why there is none."""

    job_id: str | None
    reason: str | None = None


class AwsJobs:
    """The AWS calls of the upload step, shared by the gateway's worker and the Lambda."""

    def __init__(self, config: AwsConfig) -> None:
        self.config = config
        self.s3: Any = None
        self.sqs: Any = None
        self.mediaconvert: Any = None
        self.rekognition: Any = None
        self._stack: AsyncExitStack | None = None
        self.watermark_size = png_size(config.watermark_file.read_bytes())

    async def open(self, session: Any) -> None:
        """Open the four clients (one connection pool each) from an ``aioboto3.Session``."""
        cfg = self.config
        stack = AsyncExitStack()
        retries = {"max_attempts": 5, "mode": "standard"}
        s3_config = Config(
            signature_version="s3v4", s3={"addressing_style": "path"}, retries=retries
        )
        try:
            self.s3 = await stack.enter_async_context(
                session.client(
                    "s3", region_name=cfg.region, endpoint_url=cfg.endpoint_url, config=s3_config
                )
            )
            self.sqs = await stack.enter_async_context(
                session.client(
                    "sqs",
                    region_name=cfg.region,
                    endpoint_url=cfg.endpoint_url,
                    config=Config(retries=retries),
                )
            )
            self.mediaconvert = await stack.enter_async_context(
                session.client(
                    "mediaconvert",
                    region_name=cfg.region,
                    endpoint_url=cfg.mediaconvert_endpoint,
                    config=Config(retries=retries),
                )
            )
            self.rekognition = await stack.enter_async_context(
                session.client(
                    "rekognition", region_name=cfg.region, config=Config(retries=retries)
                )
            )
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None

    async def submit(self, bucket: str, key: str) -> tuple[UploadKey, Submitted] | None:
        """Check an uploaded object and start its job; None when the key is no upload at all."""
        if bucket != self.config.bucket:
            log.warning("refused upload event for bucket %r (not %r)", bucket, self.config.bucket)
            return None
        parsed = parse_upload_key(key)
        if parsed is None:
            log.warning("refused upload event: %r is outside every users/{id}/uploads/", key)
            return None
        return parsed, await self.start_job(parsed)

    async def start_job(self, parsed: UploadKey) -> Submitted:
        """Read the object's head and create its MediaConvert job."""
        cfg = self.config
        try:
            head = await self.s3.head_object(Bucket=cfg.bucket, Key=parsed.key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return Submitted(None, "the upload is gone")
            raise
        size = int(head.get("ContentLength", 0))
        content_type = str(head.get("ContentType", "")).lower()
        if size > cfg.max_upload_bytes:
            return Submitted(None, f"uploads are at most {cfg.max_upload_bytes} bytes")
        if CONTENT_TYPES.get(content_type) != parsed.ext:
            return Submitted(None, "the upload's content type is not accepted")
        request = job_request(
            role_arn=cfg.mediaconvert_role,
            queue_arn=cfg.mediaconvert_queue,
            input_uri=f"s3://{cfg.bucket}/{parsed.key}",
            output_prefix=f"s3://{cfg.bucket}/{video_prefix(parsed.owner, parsed.video_id)}",
            ladder=cfg.ladder,
            segment_seconds=cfg.segment_seconds,
            watermark_uri=f"s3://{cfg.bucket}/{cfg.watermark_key}",
            watermark_size=self.watermark_size,
            video_id=parsed.video_id,
            owner=parsed.owner,
            submitted_ms=int(time.time() * 1000),
        )
        response = await self.mediaconvert.create_job(**request)
        return Submitted(str(response["Job"]["Id"]))

    async def cancel(self, job_id: str) -> None:
        with contextlib.suppress(*AWS_ERRORS):
            await self.mediaconvert.cancel_job(Id=job_id)


class AwsMedia:
    """S3 + SQS worker + MediaConvert + Rekognition + CloudFront backend."""

    name = "aws"

    def __init__(self, config: AwsConfig, ledger: Ledger, session: Any = None) -> None:
        self.config = config
        self.ledger = ledger
        self.jobs = AwsJobs(config)
        self._session = session
        self._signer = (
            CloudFrontSigner(config.cloudfront_key_id, config.cloudfront_private_key)
            if config.cloudfront_private_key
            else None
        )
        self._task: asyncio.Task[None] | None = None
        self.refused = 0
        """Upload events refused because the key is not its video owner's (for metrics)."""
        self.handled = 0
        """Queue messages handled and deleted."""
        self.observe_transcode: Callable[[float, str], None] | None = None
        """Called with (seconds, outcome) when a job's end is first recorded: ``ok``,
        ``rejected`` (too long) or ``failed``; from its submission (``submitted_ms`` in its
        user metadata) to the completion event's time."""

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        session = self._session
        if session is None:
            import aioboto3  # the local backend never needs it, so import it here

            session = aioboto3.Session()
        await self.jobs.open(session)
        await self.ensure_watermark()
        if self.config.queue_url:
            self._task = asyncio.create_task(self._poll(), name="media-sqs-worker")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.jobs.close()

    async def ensure_watermark(self) -> None:
        """Put the configured watermark image in the bucket unless the same one is there."""
        cfg = self.config
        body = await asyncio.to_thread(cfg.watermark_file.read_bytes)
        etag = f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'
        try:
            head = await self.jobs.s3.head_object(Bucket=cfg.bucket, Key=cfg.watermark_key)
            if head.get("ETag") == etag:
                return
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in {"404", "NoSuchKey", "NotFound"}:
                raise
        await self.jobs.s3.put_object(
            Bucket=cfg.bucket, Key=cfg.watermark_key, Body=body, ContentType="image/png"
        )

    # -- uploads and playback --------------------------------------------------------------

    async def upload_form(
        self, owner: str, video_id: str, content_type: str, size: int, base_url: str
    ) -> UploadForm:
        cfg = self.config
        if size > cfg.max_upload_bytes:
            raise UploadTooLarge(f"uploads are at most {cfg.max_upload_bytes} bytes")
        key = upload_key(owner, video_id, content_type)
        content_type = content_type.strip().lower()
        post = await self.jobs.s3.generate_presigned_post(
            Bucket=cfg.bucket,
            Key=key.key,
            Fields={"Content-Type": content_type},
            Conditions=[{"Content-Type": content_type}, ["content-length-range", 1, size]],
            ExpiresIn=cfg.upload_ttl,
        )
        expires_at = int(cfg.clock()) + cfg.upload_ttl
        fields = {str(k): str(v) for k, v in post["fields"].items()}
        return UploadForm(str(post["url"]), fields, key.key, content_type, size, expires_at)

    async def playback(self, owner: str, video_id: str, base_url: str) -> Playback:
        cfg = self.config
        if self._signer is None:
            raise RuntimeError("CloudFront signing is not configured")
        prefix = video_prefix(owner, video_id)
        base = f"https://{cfg.cloudfront_domain}/{prefix}"
        expires_at = int(cfg.clock()) + cfg.playback_ttl
        signed = self._signer.signed_cookies(base + "*", expires_at)
        return Playback(
            video_id=video_id,
            master_url=self._signer.signed_url(base + "master.m3u8", expires_at),
            thumbnail_url=self._signer.signed_url(
                f"https://{cfg.cloudfront_domain}/{thumbnail_key(prefix)}", expires_at
            ),
            expires_at=expires_at,
            cookies=signed.cookies,
            cookie_domain=cfg.cloudfront_domain,
            cookie_path="/" + prefix,
            query=signed.query,
        )

    # -- the worker ------------------------------------------------------------------------

    async def _poll(self) -> None:
        cfg = self.config
        backoff = 1.0
        while True:
            try:
                answer = await self.jobs.sqs.receive_message(
                    QueueUrl=cfg.queue_url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=cfg.sqs_wait,
                    VisibilityTimeout=cfg.visibility_timeout,
                )
            except AWS_ERRORS as exc:
                log.warning("media queue unreachable (%s); retrying in %.0f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)
                continue
            backoff = 1.0
            for message in answer.get("Messages", []):
                await self._handle_one(message)

    async def _handle_one(self, message: Mapping[str, Any]) -> None:
        try:
            body = orjson.loads(message.get("Body", ""))
        except orjson.JSONDecodeError:
            log.warning("dropped a media queue message that is not JSON")
            body = None
        if body is not None:
            try:
                await self.handle_message(body)
            except Exception:
                # Left on the queue: it comes back after the visibility timeout (then to the
                # dead-letter queue after the redrive limit).
                log.exception("media queue message failed; it will be delivered again")
                return
        with contextlib.suppress(*AWS_ERRORS):
            await self.jobs.sqs.delete_message(
                QueueUrl=self.config.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        self.handled += 1

    async def handle_message(self, body: object) -> None:
        """Handle one queue message: S3 event, MediaConvert event, Lambda report, or SNS wrap."""
        if not isinstance(body, dict):
            log.warning("dropped a media queue message that is not a JSON object")
            return
        if body.get("Type") == "Notification" and isinstance(body.get("Message"), str):
            await self.handle_message(orjson.loads(body["Message"]))
        elif isinstance(body.get("Records"), list):
            for record in body["Records"]:
                if (
                    isinstance(record, dict)
                    and record.get("eventSource") == "aws:s3"
                    and str(record.get("eventName", "")).startswith("ObjectCreated:")
                ):
                    s3 = record.get("s3", {})
                    await self.on_uploaded(
                        str(s3.get("bucket", {}).get("name", "")),
                        unquote_plus(str(s3.get("object", {}).get("key", ""))),
                    )
        elif body.get("source") == "aws.mediaconvert" and isinstance(body.get("detail"), dict):
            await self.on_job_event(body["detail"])
        elif body.get("type") == JOB_REPORT:
            await self.on_report(body)
        elif body.get("Event") != "s3:TestEvent":
            log.warning("dropped an unknown media queue message")

    async def _owned(self, video_id: str, owner: str) -> VideoRef | None:
        """The video, if ``owner`` owns it; else None (and the refusal is counted)."""
        video = await self.ledger.get(video_id)
        if video is None or video.owner != owner:
            self.refused += 1
            log.warning("refused media for video %s: not an upload of its owner", video_id)
            return None
        return video

    async def on_uploaded(self, bucket: str, key: str) -> None:
        """An object was created: check it is its video owner's upload, then start the job."""
        parsed = parse_upload_key(key) if bucket == self.config.bucket else None
        if parsed is None:
            self.refused += 1
            log.warning(
                "refused upload event for s3://%s/%s: outside users/{id}/uploads/", bucket, key
            )
            return
        video = await self._owned(parsed.video_id, parsed.owner)
        if video is None or video.state is not VideoState.UPLOADING:
            return
        await self._started(video, await self.jobs.start_job(parsed))

    async def on_report(self, body: Mapping[str, Any]) -> None:
        """The Lambda submitted (or refused) an upload's job: record it, or cancel the job."""
        job_id = body.get("job_id")
        video = await self._owned(str(body.get("video_id", "")), str(body.get("owner", "")))
        if video is None or video.state is not VideoState.UPLOADING:
            if isinstance(job_id, str):
                await self.jobs.cancel(job_id)
            return
        reason = body.get("reason")
        await self._started(
            video,
            Submitted(
                job_id if isinstance(job_id, str) else None,
                reason if isinstance(reason, str) else None,
            ),
        )

    async def _started(self, video: VideoRef, submitted: Submitted) -> None:
        if submitted.job_id is None:
            await self._record(video, VideoState.FAILED, reason=submitted.reason)
            return
        if await self._record(video, VideoState.PROCESSING) is None:
            # Another delivery of the same event got there first; its job is the one kept.
            await self.jobs.cancel(submitted.job_id)

    async def on_job_event(self, detail: Mapping[str, Any]) -> None:
        """MediaConvert finished a job (or failed it): moderate, or record the failure."""
        status = detail.get("status")
        meta = detail.get("userMetadata") or {}
        if status not in {"COMPLETE", "ERROR"} or not isinstance(meta, dict):
            return
        video = await self._owned(str(meta.get("video_id", "")), str(meta.get("owner", "")))
        if video is None:
            return
        if status == "ERROR":
            if video.state is VideoState.PROCESSING:
                log.warning(
                    "MediaConvert job %s for video %s failed: %s %s",
                    detail.get("jobId"),
                    video.id,
                    detail.get("errorCode"),
                    detail.get("errorMessage"),
                )
                failed = await self._record(
                    video,
                    VideoState.FAILED,
                    reason="the video could not be converted",
                    detail={"code": CONVERT_FAILED},
                )
                if failed is not None:  # timed once, by the delivery that recorded the end
                    self._observe(detail, meta, "failed")
            return
        if video.state is VideoState.PROCESSING:
            # The outputs' length is what MediaConvert decoded, not what the header claimed.
            too_long = _duration_ms(detail) > self.config.max_seconds * 1000
            if too_long:
                rejected = await self._record(
                    video,
                    VideoState.REJECTED,
                    reason=f"videos are at most {self.config.max_seconds:g} seconds long",
                    detail={"code": TOO_LONG},
                )
                if rejected is not None:
                    self._observe(detail, meta, "rejected")
                return
            names = [rung.name for rung in self.config.ladder]
            video = await self._record(video, VideoState.MODERATING, detail={"renditions": names})
            if video is not None:
                self._observe(detail, meta, "ok")
        if video is not None and video.state is VideoState.MODERATING:
            await self.moderate(video)

    def _observe(self, detail: Mapping[str, Any], meta: Mapping[str, Any], outcome: str) -> None:
        """Time a finished job from its submission to its event (nothing when either is unknown)."""
        if self.observe_transcode is None:
            return
        ended = detail.get("timestamp")
        if not isinstance(ended, int) or isinstance(ended, bool):
            ended = int(time.time() * 1000)
        try:
            submitted = int(str(meta.get("submitted_ms", "")))
        except ValueError:
            return  # a job submitted by an earlier release
        self.observe_transcode(max(0.0, (ended - submitted) / 1000), outcome)

    async def moderate(self, video: VideoRef) -> None:
        """Ask Rekognition about every captured frame; record ready or rejected."""
        cfg = self.config
        prefix = video_prefix(video.owner, video.id) + "thumbs/"
        listing = await self.jobs.s3.list_objects_v2(
            Bucket=cfg.bucket, Prefix=prefix, MaxKeys=MAX_FRAMES * 2
        )
        frames = sorted(
            str(item["Key"])
            for item in listing.get("Contents", [])
            if str(item["Key"]).endswith(".jpg")
        )[:MAX_FRAMES]
        if not frames:
            await self._record(video, VideoState.FAILED, reason="the video has no frames to check")
            return
        # One frame at a time, stopping at the first that breaks the rules: a rejected video
        # costs fewer Rekognition calls, and a clean one at most MAX_FRAMES.
        labels: list[str] = []
        for frame in frames:
            answer = await self.jobs.rekognition.detect_moderation_labels(
                Image={"S3Object": {"Bucket": cfg.bucket, "Name": frame}},
                MinConfidence=cfg.min_confidence,
            )
            found = {
                str(label.get("ParentName") or label["Name"])
                for label in answer.get("ModerationLabels", [])
                if float(label.get("Confidence", 0)) >= cfg.min_confidence
            }
            if found:
                labels = sorted(found)
                break
        if labels:
            await self._record(
                video,
                VideoState.REJECTED,
                reason="the video breaks the content rules",
                detail={"labels": labels},
            )
        else:
            await self._record(video, VideoState.READY, detail={"moderation": "passed"})

    async def _record(
        self,
        video: VideoRef,
        state: VideoState,
        *,
        reason: str | None = None,
        detail: Mapping[str, object] | None = None,
    ) -> VideoRef | None:
        change = Change(video.id, video.owner, video.state, state, reason, dict(detail or {}))
        if not await self.ledger.record(change):
            return None
        return VideoRef(video.id, video.owner, state)


def _duration_ms(detail: Mapping[str, Any]) -> int:
    """The longest output duration a MediaConvert COMPLETE event reports (0 when absent)."""
    longest = 0
    for group in detail.get("outputGroupDetails") or []:
        for output in group.get("outputDetails") or []:
            longest = max(longest, int(output.get("durationInMs") or 0))
    return longest
