"""A plain AWS Lambda handler for the upload step, for deployments that prefer Lambda.

Subscribe it to the bucket's ``s3:ObjectCreated:*`` events on ``users/`` (instead of sending
them to the queue). For each upload it checks the key is inside a user's upload folder, reads
the object's head, creates the MediaConvert job (:class:`media.aws.AwsJobs`, the same code the
gateway's worker runs) and reports the outcome on the media queue. The Lambda keeps no
database: the gateway's worker receives the report, checks the video's owner against the key
(cancelling the job if they differ) and records ``processing`` or ``failed``; MediaConvert's
completion event then takes the usual path through the queue.

Configuration is the gateway's own variables: ``MOOSIC_MEDIA_BUCKET``, ``MOOSIC_MEDIA_REGION``,
``MOOSIC_MEDIA_SQS_URL``, ``MOOSIC_MEDIA_MEDIACONVERT_ROLE``, and optionally
``MOOSIC_MEDIA_MEDIACONVERT_QUEUE``, ``MOOSIC_MEDIA_MEDIACONVERT_ENDPOINT``,
``MOOSIC_MEDIA_LADDER``, ``MOOSIC_MEDIA_SEGMENT_SECONDS``, ``MOOSIC_MAX_UPLOAD_BYTES``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

import orjson

from media.aws import AWS_ERRORS, JOB_REPORT, AwsConfig, AwsJobs
from media.model import DEFAULT_LADDER, parse_ladder

log = logging.getLogger(__name__)


def config_from_env(environ: Mapping[str, str]) -> AwsConfig:
    """Build the Lambda's configuration from the gateway's ``MOOSIC_*`` variables."""
    ladder = environ.get("MOOSIC_MEDIA_LADDER")
    return AwsConfig(
        bucket=environ["MOOSIC_MEDIA_BUCKET"],
        region=environ.get("MOOSIC_MEDIA_REGION", "us-east-1"),
        queue_url=environ["MOOSIC_MEDIA_SQS_URL"],
        endpoint_url=environ.get("MOOSIC_MEDIA_AWS_ENDPOINT") or None,
        mediaconvert_endpoint=environ.get("MOOSIC_MEDIA_MEDIACONVERT_ENDPOINT") or None,
        mediaconvert_role=environ["MOOSIC_MEDIA_MEDIACONVERT_ROLE"],
        mediaconvert_queue=environ.get("MOOSIC_MEDIA_MEDIACONVERT_QUEUE") or None,
        ladder=parse_ladder(ladder) if ladder else DEFAULT_LADDER,
        segment_seconds=int(environ.get("MOOSIC_MEDIA_SEGMENT_SECONDS", "4")),
        max_upload_bytes=int(environ.get("MOOSIC_MAX_UPLOAD_BYTES", str(256 * 1024 * 1024))),
    )


async def handle(event: Mapping[str, Any], jobs: AwsJobs) -> dict[str, int]:
    """Submit a job for every upload in an S3 event; report each on the queue."""
    config = jobs.config
    counts = {"submitted": 0, "refused": 0, "failed": 0}
    for record in event.get("Records", []):
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        s3 = record.get("s3", {})
        bucket = str(s3.get("bucket", {}).get("name", ""))
        key = unquote_plus(str(s3.get("object", {}).get("key", "")))
        outcome = await jobs.submit(bucket, key)
        if outcome is None:
            counts["refused"] += 1
            continue
        parsed, submitted = outcome
        report = {
            "type": JOB_REPORT,
            "video_id": parsed.video_id,
            "owner": parsed.owner,
            "key": parsed.key,
            "job_id": submitted.job_id,
            "reason": submitted.reason,
        }
        try:
            await jobs.sqs.send_message(
                QueueUrl=config.queue_url, MessageBody=orjson.dumps(report).decode()
            )
        except AWS_ERRORS:
            # Without the report nobody records the job: cancel it, and let S3 retry us.
            if submitted.job_id is not None:
                await jobs.cancel(submitted.job_id)
            raise
        counts["submitted" if submitted.job_id else "failed"] += 1
    return counts


def handler(event: Mapping[str, Any], context: object) -> dict[str, int]:
    """The Lambda entry point (``media.aws_lambda.handler``)."""
    import aioboto3  # the runtime ships boto3; aioboto3 comes with this package's dependencies

    return asyncio.run(_run(event, config_from_env(os.environ), aioboto3.Session()))


async def _run(event: Mapping[str, Any], config: AwsConfig, session: Any) -> dict[str, int]:
    jobs = AwsJobs(config)
    await jobs.open(session)
    try:
        return await handle(event, jobs)
    finally:
        await jobs.close()
