"""Connections held without signing in (issue 21, item 4), against real gateway processes.

Attackers connect from 127.0.0.2, bystanders from 127.0.0.3 (every 127/8 address is this
machine's loopback), so the per-address limits tell them apart. Assertions are on answers and
counts, never on durations; the durations printed are benchmark figures.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support.clients import PASSWORD, WsClient
from tests.support.servers import GatewayNode, local_env

TIMEOUT = 30.0
ATTACKER = "127.0.0.2"
BYSTANDER = "127.0.0.3"
SECURITY = ("X-Content-Type-Options", "X-Frame-Options", "Content-Security-Policy")


def env(work: Path, **extra: str) -> dict[str, str]:
    return local_env(work, **{"MOOSIC_LOG_LEVEL": "INFO", **extra})


class LimitedNode(GatewayNode):
    """A gateway process started with ``RLIMIT_NOFILE`` lowered to ``nofile``."""

    def __init__(self, env: dict[str, str], log_path: Path, nofile: int) -> None:
        super().__init__(env, log_path)
        self.nofile = nofile

    def command(self) -> list[str]:
        # The limit is set by the process itself before the gateway starts (prlimit's effect,
        # without a fork-time hook in a threaded test process).
        boot = (
            "import resource, runpy, sys; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({self.nofile}, {self.nofile})); "
            "sys.argv = ['gateway']; runpy.run_module('gateway', run_name='__main__')"
        )
        return [sys.executable, "-c", boot]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayNode]:
    """For the quick checks; DEBUG, so that what is logged of bad requests is all there."""
    work = tmp_path_factory.mktemp("http")
    started = GatewayNode(env(work, MOOSIC_LOG_LEVEL="DEBUG"), work / "gateway.log").start()
    yield started
    started.stop()


# -- helpers ---------------------------------------------------------------------------------


class Answer:
    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        match = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
        assert match, raw[:200]
        self.status = int(match.group(1))
        self.headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }
        self.raw = raw

    @property
    def code(self) -> str:
        assert self.headers["content-type"].startswith("application/json"), self.raw[:300]
        return str(orjson.loads(self.body)["code"])


async def connect(node: GatewayNode, source: str) -> tuple[asyncio.StreamReader, Any]:
    return await asyncio.open_connection("127.0.0.1", node.port, local_addr=(source, 0))


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    async with asyncio.timeout(TIMEOUT):
        while chunk := await reader.read(65536):
            data += chunk
    return data


async def exchange(node: GatewayNode, data: bytes, source: str = "127.0.0.1") -> Answer:
    reader, writer = await connect(node, source)
    writer.write(data)
    await writer.drain()
    raw = await read_to_eof(reader)
    writer.close()
    return Answer(raw)


async def metric(node: GatewayNode, name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(node.base_url + "/metrics") as r:
        text = await r.text()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


def session(source: str) -> aiohttp.ClientSession:
    """Each request on a new connection (a pooled one would dodge the limits under test)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    )


async def sign_in(http: aiohttp.ClientSession, node: GatewayNode, username: str) -> str:
    """Register (or log in) ``username``; return an access token."""
    credentials = {"username": username, "password": PASSWORD}
    async with http.post(node.base_url + "/v1/auth/register", json=credentials) as r:
        if r.status == 201:
            return str((await r.json())["access_token"])
        assert r.status == 409, await r.text()
    async with http.post(node.base_url + "/v1/auth/login", json=credentials) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["access_token"])


async def websocket_works(http: aiohttp.ClientSession, node: GatewayNode, token: str) -> None:
    client = await WsClient.connect(http, token, node.base_url + "/ws")
    assert "ts" in await client.result("ping")
    await client.close()


SLOW_UPLOAD = (
    b"POST /v1/media/uploads/local HTTP/1.1\r\nHost: x\r\n"
    b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 10000000\r\n\r\n"
    b'--b\r\nContent-Disposition: form-data; name="key"\r\n\r\nab'
)
"""The start of an upload whose body then stops coming (no access token: the form is the key)."""


# -- parser errors, sizes, types -------------------------------------------------------------


async def test_a_parser_error_is_json_with_the_security_headers_and_echoes_nothing(
    node: GatewayNode,
) -> None:
    secret = "Bearer sekrit-token-abcdef"
    answers = [
        await exchange(node, b"GET /healthz HTTP/1.1\r\nX-Long: " + secret.encode() + b"a" * 9000),
        await exchange(node, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n"),
        await exchange(
            node, b"GET /healthz HTTP/1.1\r\nBad Header: " + secret.encode() + b"\r\n\r\n"
        ),
    ]
    for answer in answers:
        assert (answer.status, answer.code) == (400, "bad_request"), answer.raw
        for name in SECURITY:
            assert name.lower() in answer.headers, answer.raw
        assert b"sekrit" not in answer.raw
        assert b"not http" not in answer.raw
    log = node.log_path.read_text()
    assert "sekrit" not in log
    assert "Traceback" not in log


async def test_a_huge_content_length_is_refused_before_the_body_is_sent(
    node: GatewayNode,
) -> None:
    head = (
        b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1073741824\r\n\r\n"
    )
    answer = await exchange(node, head)  # not one byte of the body; the server closes
    assert (answer.status, answer.code) == (413, "request_too_large")


async def test_a_text_plain_body_on_a_json_route_is_415(node: GatewayNode) -> None:
    body = orjson.dumps({"username": "nobody", "password": PASSWORD})
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            node.base_url + "/v1/auth/login", data=body, headers={"Content-Type": "text/plain"}
        ) as r,
    ):
        assert (r.status, (await r.json())["code"]) == (415, "unsupported_media_type")
        assert r.headers["X-Content-Type-Options"] == "nosniff"


async def test_a_client_leaving_mid_body_is_counted_not_an_internal_error(
    node: GatewayNode,
) -> None:
    before = await metric(node, "moosic_http_client_disconnects_total")
    for path in (b"/v1/auth/login", b"/v1/auth/register"):
        _reader, writer = await connect(node, "127.0.0.1")
        writer.write(
            b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"username": "al'
        )
        await writer.drain()
        writer.close()  # 17 of 100 bytes sent
        await writer.wait_closed()
    async with asyncio.timeout(TIMEOUT):
        while await metric(node, "moosic_http_client_disconnects_total") < before + 2:
            await asyncio.sleep(0.05)
    assert await metric(node, "moosic_http_client_disconnects_total") == before + 2
    assert await metric(node, "moosic_internal_errors_total") == 0
    log = node.log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert "left in the middle of a request body" in log


async def test_half_sent_headers_get_408_after_the_keepalive_timeout(
    tmp_path: Path,
) -> None:
    started = GatewayNode(
        env(tmp_path, MOOSIC_HTTP_KEEPALIVE_TIMEOUT="2"), tmp_path / "gateway.log"
    ).start()
    try:
        begun = time.monotonic()
        answer = await exchange(started, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        print(f"half-sent headers answered after {time.monotonic() - begun:.1f} s")  # noqa: T201
        assert (answer.status, answer.code) == (408, "request_timeout")
        reader, writer = await connect(started, "127.0.0.1")
        assert await read_to_eof(reader) == b""  # nothing sent: closed, no answer
        writer.close()
        assert await metric(started, "moosic_http_header_timeouts_total") == 1
    finally:
        started.stop()


# -- slow bodies -----------------------------------------------------------------------------


async def test_slow_bodies_get_408_and_a_bystander_keeps_signing_in(tmp_path: Path) -> None:
    cap = 64  # the default MOOSIC_HTTP_MAX_UNAUTHENTICATED_PER_ADDRESS
    started = GatewayNode(
        env(tmp_path, MOOSIC_HTTP_BODY_TIMEOUT="4"), tmp_path / "gateway.log"
    ).start()
    try:
        async with session(BYSTANDER) as bystander:
            await sign_in(bystander, started, "bystander")
            attackers = [await connect(started, ATTACKER) for _ in range(cap + 20)]
            begun = time.monotonic()
            for _reader, writer in attackers:
                writer.write(SLOW_UPLOAD)
            # During the attack: the bystander signs in and opens WebSockets, every time.
            for _ in range(3):
                token = await sign_in(bystander, started, "bystander")
                await websocket_works(bystander, started, token)
            answers = [Answer(await read_to_eof(reader)) for reader, _writer in attackers]
            for _reader, writer in attackers:
                writer.close()
            held = time.monotonic() - begun
            codes = [(a.status, a.code) for a in answers]
            assert codes.count((408, "request_timeout")) == cap, codes
            assert codes.count((429, "too_many_connections")) == 20, codes
            print(f"{cap} slow bodies held {held:.1f} s at most (body timeout 4 s)")  # noqa: T201
            # After it, from the attacker's own address too.
            token = await sign_in(bystander, started, "bystander")
        async with session(ATTACKER) as later:
            await websocket_works(later, started, token)
        assert await metric(started, "moosic_http_body_timeouts_total") == cap
        assert await metric(started, "moosic_internal_errors_total") == 0
        assert "Traceback" not in started.log_path.read_text()
    finally:
        started.stop()


# -- descriptors -----------------------------------------------------------------------------


async def test_a_flood_of_held_connections_leaves_descriptors_for_probes_and_users(
    tmp_path: Path,
) -> None:
    started = LimitedNode(
        env(
            tmp_path,
            MOOSIC_FD_RESERVE="96",
            MOOSIC_HTTP_MAX_UNAUTHENTICATED_PER_ADDRESS="0",  # the reserve alone
            MOOSIC_HTTP_KEEPALIVE_TIMEOUT="300",  # held for the whole test
            MOOSIC_RATE_LIMITS="off",
        ),
        tmp_path / "gateway.log",
        nofile=256,
    ).start()
    flood: list[tuple[asyncio.StreamReader, Any]] = []
    try:
        async with session(BYSTANDER) as bystander:
            token = await sign_in(bystander, started, "bystander")
            for _ in range(25):  # 400 connections, more than the 256 descriptors
                batch = [await connect(started, ATTACKER) for _ in range(16)]
                for _reader, writer in batch:
                    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
                flood += batch
                await asyncio.sleep(0.05)  # paces the flood under the listen backlog
            async with bystander.get(started.base_url + "/healthz") as r:
                assert r.status == 200
            async with bystander.get(started.base_url + "/readyz") as r:
                assert r.status == 200
            await websocket_works(bystander, started, token)
            shed = await metric(started, "moosic_http_connections_shed_total")
            assert shed > 0
            print(f"{shed:.0f} of {len(flood)} held connections shed under nofile=256")  # noqa: T201
            assert await metric(started, "moosic_open_fds") < 256
            assert await metric(started, "moosic_internal_errors_total") == 0
        assert started.process is not None
        assert started.process.poll() is None
        log = started.log_path.read_text()
        assert "closed" in log
        assert "unauthenticated connections" in log
        assert "Traceback" not in log
    finally:
        for _reader, writer in flood:
            writer.close()
        started.stop()
