"""A thin HTTP proxy in front of moto that makes chosen ``PutRecords`` entries fail.

Kinesis answers a ``PutRecords`` entry by entry; an entry that fails
(``ProvisionedThroughputExceededException``) was not written. The proxy does the same: it takes
the chosen entries out of the request before moto sees it, forwards the rest, and puts a failure
entry back at each chosen position of moto's answer. It can also fail whole calls (HTTP 500,
``InternalFailure``) without forwarding them. Every other request passes through untouched.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web

PUT_RECORDS = "Kinesis_20131202.PutRecords"
THROTTLED = "ProvisionedThroughputExceededException"
HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}

Choose = Callable[[int, bytes, str], bool]
"""(entry index in its call, the record's data, partition key) -> make it fail."""


@dataclass
class Call:
    entries: int
    bytes: int
    failed: int
    whole_call_failed: bool = False


@dataclass
class KinesisProxy:
    upstream: str
    choose: Choose = lambda _index, _data, _key: False
    fail_calls: int = 0
    """Whole PutRecords calls to fail (the first ones) before entries are judged."""
    calls: list[Call] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> KinesisProxy:
        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(
        self, request: web.Request, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body
        ) as answer:
            out = {
                k: v
                for k, v in answer.headers.items()
                if k.lower() not in HOP_HEADERS | {"content-encoding"}
            }
            return answer.status, out, await answer.read()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("X-Amz-Target") != PUT_RECORDS:
            status, headers, answer = await self._forward(request, body)
            return web.Response(status=status, headers=headers, body=answer)
        doc: dict[str, Any] = orjson.loads(body)
        entries: list[dict[str, str]] = doc["Records"]
        size = sum(len(base64.b64decode(e["Data"])) + len(e["PartitionKey"]) for e in entries)
        if self.fail_calls > 0:
            self.fail_calls -= 1
            self.calls.append(Call(len(entries), size, len(entries), whole_call_failed=True))
            failure = {"__type": "InternalFailure", "message": "the proxy failed this call"}
            return web.Response(
                status=500, body=orjson.dumps(failure), content_type="application/x-amz-json-1.1"
            )
        doomed = [
            self.choose(i, base64.b64decode(e["Data"]), e["PartitionKey"])
            for i, e in enumerate(entries)
        ]
        kept = [e for e, fail in zip(entries, doomed, strict=True) if not fail]
        results: list[dict[str, Any]] = []
        if kept:
            status, headers, answer = await self._forward(
                request, orjson.dumps({**doc, "Records": kept})
            )
            if status != 200:
                return web.Response(status=status, headers=headers, body=answer)
            results = list(orjson.loads(answer)["Records"])
        merged: list[dict[str, Any]] = []
        for fail in doomed:
            if fail:
                merged.append({"ErrorCode": THROTTLED, "ErrorMessage": "Rate exceeded for shard"})
            else:
                merged.append(results.pop(0))
        self.calls.append(Call(len(entries), size, sum(doomed)))
        answer_doc = {"FailedRecordCount": sum(doomed), "Records": merged}
        return web.Response(
            body=orjson.dumps(answer_doc), content_type="application/x-amz-json-1.1"
        )
