"""The aws backend: S3 and SQS on a real moto server over HTTP, MediaConvert and Rekognition
through botocore's Stubber on the aioboto3 clients, CloudFront links checked with the public key.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aioboto3
import aiohttp
import orjson
import pytest
from aiobotocore.stub import AioStubber
from botocore.stub import ANY
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from media.aws import JOB_REPORT, AwsConfig, AwsMedia
from media.aws_lambda import handle as lambda_handle
from media.cloudfront import cf_unb64, policy_json
from media.mediaconvert import job_request
from media.model import UploadForm, VideoState
from tests.support.media import TINY_LADDER, MemoryLedger
from tests.support.moto_server import ACCESS_KEY, REGION, SECRET_KEY, MotoServer

BUCKET = "moosic-media"
ROLE = "arn:aws:iam::123456789012:role/moosic-mediaconvert"
CDN = "d111111abcdef8.cloudfront.net"
KEY_ID = "K2JCJMDEHXQW5F"


@dataclass
class Aws:
    media: AwsMedia
    ledger: MemoryLedger
    session: Any
    queue_url: str
    convert: AioStubber
    rekognition: AioStubber
    public_key: rsa.RSAPublicKey


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def aws(moto_server: MotoServer, rsa_key: rsa.RSAPrivateKey) -> AsyncIterator[Aws]:
    moto_server.reset()
    session = aioboto3.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    )
    async with (
        session.client("s3", endpoint_url=moto_server.url) as s3,
        session.client("sqs", endpoint_url=moto_server.url) as sqs,
    ):
        await s3.create_bucket(Bucket=BUCKET)
        queue_url = (await sqs.create_queue(QueueName="moosic-media"))["QueueUrl"]
        arn = (await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"]))[
            "Attributes"
        ]["QueueArn"]
        rules = [{"Name": "prefix", "Value": "users/"}]
        await s3.put_bucket_notification_configuration(
            Bucket=BUCKET,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": rules}},
                    }
                ]
            },
        )
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    config = AwsConfig(
        bucket=BUCKET,
        region=REGION,
        queue_url=queue_url,
        endpoint_url=moto_server.url,
        mediaconvert_role=ROLE,
        cloudfront_domain=CDN,
        cloudfront_key_id=KEY_ID,
        cloudfront_private_key=pem,
        max_upload_bytes=1024 * 1024,
        ladder=TINY_LADDER,
        segment_seconds=1,
        max_seconds=60,
        sqs_wait=1,
        visibility_timeout=30,
    )
    ledger = MemoryLedger()
    media = AwsMedia(config, ledger, session)
    await media.start()
    convert = AioStubber(media.jobs.mediaconvert)
    rekognition = AioStubber(media.jobs.rekognition)
    convert.activate()
    rekognition.activate()
    # S3 announces a new notification target with a test event: once the worker has handled
    # (and deleted) it, the queue is empty and the counters start from zero.
    await wait_for(lambda: media.handled == 1)
    media.handled = 0
    try:
        yield Aws(media, ledger, session, queue_url, convert, rekognition, rsa_key.public_key())
    finally:
        await media.close()
        convert.deactivate()
        rekognition.deactivate()


async def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def post_form(form: UploadForm, data: bytes, content_type: str = "video/mp4") -> int:
    body = aiohttp.FormData()
    for name, value in form.fields.items():
        body.add_field(name, value)
    body.add_field("file", data, filename="clip.mp4", content_type=content_type)
    async with aiohttp.ClientSession() as http, http.post(form.url, data=body) as response:
        return response.status


def expected_job(owner: str, video_id: str, ext: str = "mp4") -> dict[str, Any]:
    request = job_request(
        role_arn=ROLE,
        queue_arn=None,
        input_uri=f"s3://{BUCKET}/users/{owner}/uploads/{video_id}.{ext}",
        output_prefix=f"s3://{BUCKET}/videos/{owner}/{video_id}/",
        ladder=TINY_LADDER,
        segment_seconds=1,
        watermark_uri=f"s3://{BUCKET}/brand/watermark.png",
        watermark_size=(240, 64),
        video_id=video_id,
        owner=owner,
        submitted_ms=0,
    )
    request["UserMetadata"]["submitted_ms"] = ANY  # the worker's clock
    return request


def job_answer(job_id: str) -> dict[str, Any]:
    return {"Job": {"Id": job_id, "Role": ROLE, "Settings": {}}}


def completion(
    video_id: str,
    owner: str,
    status: str = "COMPLETE",
    ms: int = 3000,
    *,
    submitted_ms: int | None = None,
    timestamp: int | None = None,
) -> bytes:
    meta = {"video_id": video_id, "owner": owner}
    if submitted_ms is not None:
        meta["submitted_ms"] = str(submitted_ms)
    detail: dict[str, Any] = {"status": status, "jobId": "job-1", "userMetadata": meta}
    if timestamp is not None:
        detail["timestamp"] = timestamp
    if status == "COMPLETE":
        detail["outputGroupDetails"] = [{"outputDetails": [{"durationInMs": ms}]}]
    else:
        detail.update(errorCode=1010, errorMessage="Demuxer: unsupported input")
    return orjson.dumps(
        {
            "source": "aws.mediaconvert",
            "detail-type": "MediaConvert Job State Change",
            "detail": detail,
        }
    )


async def put_frames(aws: Aws, owner: str, video_id: str, count: int) -> list[str]:
    keys = [f"videos/{owner}/{video_id}/thumbs/thumb.{i:07d}.jpg" for i in range(count)]
    for key in keys:
        await aws.media.jobs.s3.put_object(Bucket=BUCKET, Key=key, Body=b"\xff\xd8\xff")
    return keys


async def send(aws: Aws, body: bytes) -> None:
    await aws.media.jobs.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=body.decode())


async def test_upload_form_policy_pins_key_type_size_and_expiry(aws: Aws) -> None:
    form = await aws.media.upload_form("alice", "vid1", "video/mp4", 5000, "ignored")
    assert form.url.endswith(f"/{BUCKET}")
    assert form.key == "users/alice/uploads/vid1.mp4"
    assert form.fields["key"] == form.key
    assert form.fields["Content-Type"] == "video/mp4"
    assert form.fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    assert form.fields["x-amz-signature"]
    policy = orjson.loads(base64.b64decode(form.fields["policy"]))
    conditions = policy["conditions"]
    # moto accepts any POST; S3 enforces these, so they are checked here one by one.
    assert {"bucket": BUCKET} in conditions
    assert {"key": "users/alice/uploads/vid1.mp4"} in conditions
    assert {"Content-Type": "video/mp4"} in conditions
    assert ["content-length-range", 1, 5000] in conditions
    assert not [c for c in conditions if isinstance(c, list) and c[0] == "starts-with"]
    expiry = time.mktime(time.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(expiry - (time.time() + 900)) < 30
    assert abs(form.expires_at - (time.time() + 900)) < 30


async def test_bad_form_requests(aws: Aws) -> None:
    from media.errors import UnsupportedType, UploadTooLarge

    with pytest.raises(UploadTooLarge):
        await aws.media.upload_form("alice", "vid1", "video/mp4", 1024 * 1024 + 1, "")
    with pytest.raises(UnsupportedType):
        await aws.media.upload_form("alice", "vid1", "application/x-sh", 10, "")


async def test_upload_to_ready_through_the_queue(aws: Aws, clip_bytes: bytes) -> None:
    aws.ledger.add("vid1", "alice")
    form = await aws.media.upload_form("alice", "vid1", "video/mp4", len(clip_bytes), "")
    aws.convert.add_response("create_job", job_answer("job-1"), expected_job("alice", "vid1"))
    assert await post_form(form, clip_bytes) == 204
    # S3 → SQS → the worker: ownership checked, head read, job created, processing recorded.
    await wait_for(lambda: aws.ledger.states("vid1") == ["processing"])
    aws.convert.assert_no_pending_responses()

    frames = await put_frames(aws, "alice", "vid1", 2)
    for frame in frames:
        aws.rekognition.add_response(
            "detect_moderation_labels",
            {"ModerationLabels": [], "ModerationModelVersion": "7.0"},
            {"Image": {"S3Object": {"Bucket": BUCKET, "Name": frame}}, "MinConfidence": 80.0},
        )
    timed: list[tuple[float, str]] = []
    aws.media.observe_transcode = lambda seconds, outcome: timed.append((seconds, outcome))
    submitted = 1_700_000_000_000
    await send(aws, completion("vid1", "alice", submitted_ms=submitted, timestamp=submitted + 7000))
    await wait_for(lambda: aws.ledger.states("vid1")[-1] == "ready")
    assert timed == [(7.0, "ok")]
    aws.rekognition.assert_no_pending_responses()
    assert aws.ledger.states("vid1") == ["processing", "moderating", "ready"]
    assert aws.ledger.changes[1].detail == {"renditions": ["72p", "96p", "144p"]}
    assert aws.ledger.changes[2].detail == {"moderation": "passed"}
    # Every message was deleted once handled: nothing comes back.
    await wait_for(lambda: aws.media.handled >= 2)
    answer = await aws.media.jobs.sqs.receive_message(
        QueueUrl=aws.queue_url, WaitTimeSeconds=0, VisibilityTimeout=0
    )
    assert answer.get("Messages", []) == []


async def test_rejected_by_rekognition_stops_at_the_first_bad_frame(aws: Aws) -> None:
    aws.ledger.add("vid1", "alice", VideoState.PROCESSING)
    frames = await put_frames(aws, "alice", "vid1", 3)
    aws.rekognition.add_response(
        "detect_moderation_labels",
        {"ModerationLabels": []},
        {"Image": {"S3Object": {"Bucket": BUCKET, "Name": frames[0]}}, "MinConfidence": 80.0},
    )
    aws.rekognition.add_response(
        "detect_moderation_labels",
        {
            "ModerationLabels": [
                {"Name": "Graphic Violence", "ParentName": "Violence", "Confidence": 97.5},
                {"Name": "Violence", "ParentName": "", "Confidence": 97.5},
            ]
        },
        {"Image": {"S3Object": {"Bucket": BUCKET, "Name": frames[1]}}, "MinConfidence": 80.0},
    )
    await aws.media.handle_message(orjson.loads(completion("vid1", "alice")))
    aws.rekognition.assert_no_pending_responses()
    assert aws.ledger.states("vid1") == ["moderating", "rejected"]
    rejected = aws.ledger.changes[-1]
    assert rejected.reason == "the video breaks the content rules"
    assert rejected.detail == {"labels": ["Violence"]}


async def test_transcode_errors_fail_and_too_long_videos_are_rejected(aws: Aws) -> None:
    aws.ledger.add("v1", "alice", VideoState.PROCESSING)
    aws.ledger.add("v2", "alice", VideoState.PROCESSING)
    await aws.media.handle_message(orjson.loads(completion("v1", "alice", "ERROR")))
    # The length MediaConvert decoded and wrote, whatever the upload's header said.
    await aws.media.handle_message(orjson.loads(completion("v2", "alice", ms=61_000)))
    assert [(c.video_id, c.state, c.reason, c.detail) for c in aws.ledger.changes] == [
        ("v1", VideoState.FAILED, "the video could not be converted", {"code": "convert_failed"}),
        ("v2", VideoState.REJECTED, "videos are at most 60 seconds long", {"code": "too_long"}),
    ]
    # A repeated event finds the video failed already and changes nothing.
    await aws.media.handle_message(orjson.loads(completion("v1", "alice", "ERROR")))
    assert len(aws.ledger.changes) == 2


async def test_each_jobs_end_is_timed_once_from_its_submission(aws: Aws) -> None:
    timed: list[tuple[float, str]] = []
    aws.media.observe_transcode = lambda seconds, outcome: timed.append((seconds, outcome))
    for video in ("v1", "v2", "v3"):
        aws.ledger.add(video, "alice", VideoState.PROCESSING)
    at = 1_700_000_000_000
    failed = completion("v1", "alice", "ERROR", submitted_ms=at, timestamp=at + 42_500)
    await aws.media.handle_message(orjson.loads(failed))
    await aws.media.handle_message(orjson.loads(failed))  # delivered twice: timed once
    too_long = completion("v2", "alice", ms=61_000, submitted_ms=at, timestamp=at + 90_000)
    await aws.media.handle_message(orjson.loads(too_long))
    # A job an earlier release submitted carries no submission time: not timed.
    await aws.media.handle_message(orjson.loads(completion("v3", "alice", "ERROR")))
    assert timed == [(42.5, "failed"), (90.0, "rejected")]


async def test_rekognition_error_leaves_the_message_for_redelivery(aws: Aws) -> None:
    aws.ledger.add("vid1", "alice", VideoState.MODERATING)
    frames = await put_frames(aws, "alice", "vid1", 1)
    aws.rekognition.add_client_error("detect_moderation_labels", "ThrottlingException", "slow down")
    message = {"Body": completion("vid1", "alice").decode(), "ReceiptHandle": "unused"}
    await aws.media._handle_one(message)
    assert aws.ledger.changes == []
    assert aws.media.handled == 0
    aws.rekognition.add_response(
        "detect_moderation_labels",
        {"ModerationLabels": []},
        {"Image": {"S3Object": {"Bucket": BUCKET, "Name": frames[0]}}, "MinConfidence": 80.0},
    )
    await aws.media.handle_message(orjson.loads(message["Body"]))
    assert aws.ledger.states("vid1") == ["ready"]


async def test_worker_refuses_keys_outside_the_owners_prefix(aws: Aws) -> None:
    aws.ledger.add("vid1", "alice")
    s3 = aws.media.jobs.s3
    # Mallory (with S3 access outside the signed forms) writes into her own folder naming
    # alice's video, and into no user's upload folder at all: no job is created (the stubbed
    # MediaConvert has no answer queued, so any call would fail the test), nothing recorded.
    for key in ["users/mallory/uploads/vid1.mp4", "users/alice/elsewhere/vid1.mp4"]:
        await s3.put_object(Bucket=BUCKET, Key=key, Body=b"x", ContentType="video/mp4")
    await wait_for(lambda: aws.media.refused == 2)
    await aws.media.handle_message(upload_event("users/alice/uploads/vid1.mp4", "other-bucket"))
    assert aws.media.refused == 3
    assert aws.ledger.changes == []
    # A MediaConvert event naming a video with the wrong owner is refused the same way.
    await aws.media.handle_message(orjson.loads(completion("vid1", "mallory")))
    assert aws.media.refused == 4
    assert aws.ledger.changes == []


def upload_event(key: str, bucket: str = BUCKET) -> dict[str, Any]:
    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Post",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
    }
    return {"Records": [record]}


async def test_duplicate_upload_events_make_one_job(aws: Aws) -> None:
    aws.ledger.add("vid1", "alice")
    aws.convert.add_response(
        "create_job", job_answer("job-9"), expected_job("alice", "vid1", "mov")
    )
    await aws.media.jobs.s3.put_object(
        Bucket=BUCKET,
        Key="users/alice/uploads/vid1.mov",
        Body=b"x" * 10,
        ContentType="video/quicktime",
    )
    await wait_for(lambda: aws.ledger.states("vid1") == ["processing"])
    # The same event again (SQS delivers at least once; S3 keys arrive URL-encoded): the video
    # is processing already, so no second job is made (no answer is queued for one).
    await aws.media.handle_message(upload_event("users%2Falice%2Fuploads%2Fvid1.mov"))
    aws.convert.assert_no_pending_responses()
    assert aws.ledger.states("vid1") == ["processing"]


async def test_upload_of_the_wrong_type_fails(aws: Aws) -> None:
    aws.ledger.add("vid1", "alice")
    await aws.media.jobs.s3.put_object(
        Bucket=BUCKET, Key="users/alice/uploads/vid1.mp4", Body=b"x", ContentType="text/html"
    )
    await wait_for(lambda: aws.ledger.states("vid1") == ["failed"])
    assert aws.ledger.changes[0].reason == "the upload's content type is not accepted"


async def test_lambda_submits_and_the_worker_records_or_cancels(aws: Aws) -> None:
    s3 = aws.media.jobs.s3
    # A Lambda deployment: S3 invokes the function instead of notifying the queue.
    await s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={})
    aws.ledger.add("vid1", "alice")
    aws.ledger.add("vid2", "bob")
    for key in ["users/alice/uploads/vid1.mp4", "users/mallory/uploads/vid2.mp4"]:
        await s3.put_object(Bucket=BUCKET, Key=key, Body=b"x", ContentType="video/mp4")
    aws.convert.add_response("create_job", job_answer("job-a"), expected_job("alice", "vid1"))
    aws.convert.add_response("create_job", job_answer("job-m"), expected_job("mallory", "vid2"))
    aws.convert.add_response("cancel_job", {}, {"Id": "job-m"})
    event = {
        "Records": [
            upload_event("users/alice/uploads/vid1.mp4")["Records"][0],
            upload_event("users/mallory/uploads/vid2.mp4")["Records"][0],
            upload_event("not-a-user/uploads/x.mp4")["Records"][0],
        ]
    }
    counts = await lambda_handle(event, aws.media.jobs)
    assert counts == {"submitted": 2, "refused": 1, "failed": 0}
    # The reports reach the worker through the queue: alice's job is recorded; the one for
    # bob's video found in mallory's folder is cancelled and nothing is recorded for it.
    await wait_for(lambda: aws.ledger.states("vid1") == ["processing"])
    await wait_for(lambda: aws.media.handled == 2)
    aws.convert.assert_no_pending_responses()
    assert aws.ledger.states("vid2") == []
    assert aws.media.refused == 1


async def test_report_of_a_refused_upload_records_failed(aws: Aws) -> None:
    aws.ledger.add("vid1", "alice")
    report = {
        "type": JOB_REPORT,
        "video_id": "vid1",
        "owner": "alice",
        "key": "users/alice/uploads/vid1.mp4",
        "job_id": None,
        "reason": "uploads are at most 1048576 bytes",
    }
    await aws.media.handle_message(
        {"Type": "Notification", "Message": orjson.dumps(report).decode()}
    )
    assert aws.ledger.states("vid1") == ["failed"]
    assert aws.ledger.changes[0].reason == "uploads are at most 1048576 bytes"


async def test_the_watermark_is_in_the_bucket(aws: Aws) -> None:
    from media.model import DEFAULT_WATERMARK

    stored = await aws.media.jobs.s3.get_object(Bucket=BUCKET, Key="brand/watermark.png")
    async with stored["Body"] as body:
        assert await body.read() == DEFAULT_WATERMARK.read_bytes()
    assert stored["ContentType"] == "image/png"


def verify(public_key: rsa.RSAPublicKey, message: bytes, signature: str) -> None:
    public_key.verify(cf_unb64(signature), message, padding.PKCS1v15(), hashes.SHA1())


async def test_cloudfront_links_verify_with_the_public_key(aws: Aws) -> None:
    playback = await aws.media.playback("alice", "vid1", "")
    base = f"https://{CDN}/videos/alice/vid1/"
    assert abs(playback.expires_at - (time.time() + 900)) < 30

    # Canned policy URLs: CloudFront rebuilds the policy from the URL and Expires.
    for url, path in [
        (playback.master_url, "master.m3u8"),
        (playback.thumbnail_url, "thumbs/thumb.0000000.jpg"),
    ]:
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        assert f"https://{parts.netloc}{parts.path}" == base + path
        assert query["Key-Pair-Id"] == KEY_ID
        assert int(query["Expires"]) == playback.expires_at
        verify(aws.public_key, policy_json(base + path, playback.expires_at), query["Signature"])
        with pytest.raises(InvalidSignature):
            verify(
                aws.public_key,
                policy_json(base + "other.m3u8", playback.expires_at),
                query["Signature"],
            )

    # Custom policy cookies: the whole video folder, same expiry, signed policy.
    cookies = playback.cookies
    assert cookies is not None
    policy = cf_unb64(cookies["CloudFront-Policy"])
    assert orjson.loads(policy) == {
        "Statement": [
            {
                "Resource": base + "*",
                "Condition": {"DateLessThan": {"AWS:EpochTime": playback.expires_at}},
            }
        ]
    }
    verify(aws.public_key, policy, cookies["CloudFront-Signature"])
    assert cookies["CloudFront-Key-Pair-Id"] == KEY_ID
    assert (playback.cookie_domain, playback.cookie_path) == (CDN, "/videos/alice/vid1/")
    assert playback.query == (
        f"Policy={cookies['CloudFront-Policy']}&Signature={cookies['CloudFront-Signature']}"
        f"&Key-Pair-Id={KEY_ID}"
    )
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    with pytest.raises(InvalidSignature):
        verify(other, policy, cookies["CloudFront-Signature"])
