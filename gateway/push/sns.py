"""Amazon SNS mobile push as a push sink (``MOOSIC_PUSH_SINK=sns``), through aioboto3.

Each device gets a platform endpoint under the platform application of its platform
(``MOOSIC_SNS_APNS_ARN``, ``MOOSIC_SNS_FCM_ARN``), made by ``CreatePlatformEndpoint`` on its
first send and remembered by the drainer (:attr:`Delivery.endpoint`, stored on the device);
later sends ``Publish`` to it. The message is SNS's JSON structure: an ``APNS`` (and
``APNS_SANDBOX``) payload with an alert, a ``thread-id`` of the conversation and the app's data,
and a ``GCM`` payload (FCM) with a notification whose ``tag`` is the conversation (a newer one
replaces it on the phone) and the data.

A token that has an endpoint already (an earlier device of the same token, another account's)
is refused by ``CreatePlatformEndpoint`` with the existing endpoint's ARN in the message: that
endpoint is used. Verdicts: ``EndpointDisabled`` (the provider told SNS the token is dead), ``NotFound`` (the
endpoint is gone) and an ``InvalidParameter`` refusal of the token when making the endpoint are
``GONE``: the device is dropped, and a disabled endpoint deleted. Throttling, server errors, time-outs and lost connections are
``FAILED`` and retried by the drainer. botocore's own retries are off.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import orjson

from gateway.aws import AwsSink
from gateway.push.sink import Delivery, Push, Verdict
from storage.push import Device

GONE_ON_PUBLISH = frozenset({"EndpointDisabled", "NotFound", "NotFoundException"})
GONE_ON_CREATE = frozenset({"InvalidParameter", "InvalidParameterException"})
EXISTING = re.compile(r"Endpoint (arn:\S+) already exists")
"""SNS's refusal to make a second endpoint for one token names the first."""


def sns_message(push: Push) -> str:
    """The ``MessageStructure=json`` body: one payload per platform."""
    data = push.data()
    apns = orjson.dumps(
        {
            "aps": {
                "alert": {"title": push.title, "body": push.body},
                "thread-id": push.conversation,
                "sound": "default",
            },
            "moosic": data,
        }
    ).decode()
    gcm = orjson.dumps(
        {
            "notification": {"title": push.title, "body": push.body, "tag": push.conversation},
            "data": {key: str(value) for key, value in data.items()},
        }
    ).decode()
    return orjson.dumps(
        {"default": push.body or push.title, "APNS": apns, "APNS_SANDBOX": apns, "GCM": gcm}
    ).decode()


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class SnsSink(AwsSink):
    """:class:`gateway.push.sink.PushSink` on SNS platform endpoints."""

    def __init__(
        self,
        *,
        applications: dict[str, str],
        region: str,
        endpoint_url: str | None,
        session: Any = None,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(
            "sns",
            region=region,
            endpoint_url=endpoint_url,
            session=session,
            connect_timeout=timeout,
            read_timeout=timeout,
        )
        self.applications = applications
        """Platform application ARN by device platform (``apns``, ``fcm``)."""

    async def _endpoint(self, device: Device) -> str | Delivery:
        if device.endpoint is not None:
            return device.endpoint
        application = self.applications.get(device.platform)
        if application is None:
            return Delivery(Verdict.FAILED, detail=f"no SNS application for {device.platform}")
        answer = await self._client.create_platform_endpoint(
            PlatformApplicationArn=application,
            Token=device.token,
            CustomUserData=device.id,
        )
        return str(answer["EndpointArn"])

    async def send(self, device: Device, push: Push) -> Delivery:
        from botocore.exceptions import BotoCoreError, ClientError

        if self._client is None:
            return Delivery(Verdict.FAILED, detail="the SNS sink is not open")
        endpoint: str | None = None
        try:
            made = await self._endpoint(device)
            if isinstance(made, Delivery):
                return made
            endpoint = made
        except ClientError as exc:
            code = _code(exc)
            existing = EXISTING.search(str(exc))
            if existing is None:
                verdict = Verdict.GONE if code in GONE_ON_CREATE else Verdict.FAILED
                return Delivery(verdict, detail=f"CreatePlatformEndpoint: {code}")
            # The token has an endpoint already (made for an earlier device of it, with other
            # user data): SNS names it in its refusal, and it is this device's now.
            endpoint = existing.group(1)
        except (BotoCoreError, OSError, TimeoutError) as exc:
            return Delivery(Verdict.FAILED, detail=f"CreatePlatformEndpoint: {type(exc).__name__}")
        try:
            await self._client.publish(
                TargetArn=endpoint, Message=sns_message(push), MessageStructure="json"
            )
        except ClientError as exc:
            code = _code(exc)
            if code not in GONE_ON_PUBLISH:
                return Delivery(Verdict.FAILED, endpoint=endpoint, detail=f"Publish: {code}")
            # The device goes; so does its endpoint (a failure here leaves it to SNS).
            with contextlib.suppress(ClientError, BotoCoreError, OSError, TimeoutError):
                await self._client.delete_endpoint(EndpointArn=endpoint)
            return Delivery(Verdict.GONE, detail=f"Publish: {code}")
        except (BotoCoreError, OSError, TimeoutError) as exc:
            return Delivery(
                Verdict.FAILED, endpoint=endpoint, detail=f"Publish: {type(exc).__name__}"
            )
        return Delivery(Verdict.SENT, endpoint=endpoint)
