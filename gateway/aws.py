"""The base of the sinks on one AWS service (SES, SNS, Kinesis): its aioboto3 client.

The client is made at :meth:`AwsSink.open` and released at :meth:`AwsSink.close`. botocore's own
retries are off: each sink retries, and only what failed. aioboto3 is imported only when a
client is opened, so a node with the default sinks never loads it.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any


class AwsSink:
    """A sink on one AWS service: ``_client`` is live between :meth:`open` and :meth:`close`."""

    def __init__(
        self,
        service: str,
        *,
        region: str,
        endpoint_url: str | None,
        session: Any = None,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        self.service = service
        self.region = region
        self.endpoint_url = endpoint_url
        self._session = session
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._stack: AsyncExitStack | None = None
        self._client: Any = None

    async def open(self) -> None:
        from botocore.config import Config

        session = self._session
        if session is None:
            import aioboto3

            session = aioboto3.Session()
        config = Config(
            retries={"total_max_attempts": 1},
            connect_timeout=self._connect_timeout,
            read_timeout=self._read_timeout,
        )
        stack = AsyncExitStack()
        self._client = await stack.enter_async_context(
            session.client(
                self.service,
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                config=config,
            )
        )
        self._stack = stack

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
        self._client = None
