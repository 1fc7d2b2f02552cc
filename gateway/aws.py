"""One aioboto3 client, opened and closed with the sink that owns it (SES, SNS, Kinesis).

botocore's own retries are off: each owner retries, and only what failed. aioboto3 is imported
only when a client is opened, so a node with the default sinks never loads it.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any


class AwsClient:
    """The client of one AWS service, made at :meth:`open` and released at :meth:`close`."""

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

    async def open(self) -> Any:
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
        client = await stack.enter_async_context(
            session.client(
                self.service,
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                config=config,
            )
        )
        self._stack = stack
        return client

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
