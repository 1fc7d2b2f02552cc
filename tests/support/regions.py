"""Several regions on loopback: each its own Redis, gateway process and SQLite store, linked
through delay-injecting TCP proxies (``tc netem`` is not available here).

Region X reaches region Y's server API (its private port) only through ``proxies[Y]``, a
:class:`DelayProxy` that holds every chunk for ``delay`` seconds in each direction, in order.
Stopping the proxies cuts every link (open connections are reset, new ones refused); starting
them again on the same ports restores them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.servers import GatewayNode, RedisServer, free_port, node_env

LINK_KEY = "region-link-key-0123456789-abcdefghijklmnop"
"""The key every test region presents to the others (and accepts as a server API key)."""
QUEUED_CHUNKS = 256
"""Chunks a proxy holds per direction of a connection; reading waits beyond (backpressure)."""


class DelayProxy:
    """A loopback TCP proxy to ``127.0.0.1:target`` adding ``delay`` seconds one way."""

    def __init__(self, target: int, delay: float) -> None:
        self.port = free_port()
        self.target = target
        self.delay = delay
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Cut: refuse new connections and reset the open ones."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._transports.add(writer.transport)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self._transports.add(up_writer.transport)
        self.connections += 1
        loop = asyncio.get_running_loop()
        pumps = [
            loop.create_task(self._pump(reader, up_writer)),
            loop.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.gather(*pumps)
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a side closed, or stop() cut the connection (this task is not cancelled)
        finally:
            for pump in pumps:
                pump.cancel()
            writer.transport.abort()
            up_writer.transport.abort()
            self._transports.discard(writer.transport)
            self._transports.discard(up_writer.transport)
            self._tasks.difference_update(pumps)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUED_CHUNKS)

        async def send() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    writer.transport.abort()
                    return
                writer.write(data)
                await writer.drain()

        sender = loop.create_task(send())
        try:
            while data := await reader.read(65536):
                await queue.put((loop.time() + self.delay, data))
            await queue.put((loop.time() + self.delay, b""))
            await sender
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await sender


@dataclass
class Region:
    name: str
    redis: RedisServer
    api_port: int
    proxy: DelayProxy
    """How the other regions reach this one's server API."""
    nodes: list[GatewayNode] = field(default_factory=list)

    @property
    def node(self) -> GatewayNode:
        return self.nodes[0]

    @property
    def ws_url(self) -> str:
        return self.node.base_url + "/ws"


@dataclass
class Regions:
    regions: dict[str, Region]

    def __getitem__(self, name: str) -> Region:
        return self.regions[name]

    async def cut(self) -> None:
        for region in self.regions.values():
            await region.proxy.stop()

    async def restore(self) -> None:
        for region in self.regions.values():
            await region.proxy.start()


def _region_env(
    region: Region, everyone: list[Region], tmp_path: Path, api_port: int, **extra: str
) -> dict[str, str]:
    urls = ",".join(
        f"{other.name}=" + (f"http://127.0.0.1:{api_port}" if other is region else other.proxy.url)
        for other in everyone
    )
    return node_env(
        region.redis,
        tmp_path / region.name,
        MOOSIC_REGION=region.name,
        MOOSIC_REGIONS=urls,
        MOOSIC_REGION_LINK_KEY=LINK_KEY,
        MOOSIC_SERVER_API_KEYS=LINK_KEY,
        MOOSIC_SERVER_API_PORT=str(api_port),
        MOOSIC_REGION_TIMEOUT="3",
        MOOSIC_REDIS_PREFIX=f"t{region.name}:",  # one per region: its nodes share pub/sub
        **extra,
    )


@contextlib.asynccontextmanager
async def running_regions(
    tmp_path: Path,
    names: list[str],
    *,
    delay: float = 0.08,
    nodes: dict[str, int] | None = None,
    **extra: str,
) -> AsyncIterator[Regions]:
    """Start one Redis, one linking proxy and gateways (``nodes[name]``, default one) per
    region; always stop them all.

    A region's nodes share its Redis and its SQLite file; the other regions reach the first
    node's server API (through the proxy), as if a load balancer had one target.
    """
    made: list[Region] = []
    try:
        for name in names:
            redis = RedisServer(tmp_path / name / "redis")
            await asyncio.to_thread(redis.start)
            api_port = free_port()
            proxy = DelayProxy(api_port, delay)
            made.append(Region(name, redis, api_port, proxy))
            await proxy.start()
        for region in made:
            for index in range((nodes or {}).get(region.name, 1)):
                api_port = region.api_port if index == 0 else free_port()
                env = _region_env(region, made, tmp_path, api_port, **extra)
                node = GatewayNode(env, tmp_path / region.name / f"node-{index}.log")
                region.nodes.append(node)
                await asyncio.to_thread(node.start)
        yield Regions({region.name: region for region in made})
    finally:
        for region in made:
            for node in region.nodes:
                await asyncio.to_thread(node.stop)
            await region.proxy.stop()
            region.redis.stop()
