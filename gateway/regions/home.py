"""The home side of a region link: another region's relay follows channels homed here.

The relay opens one WebSocket (``GET /server/v1/regions/link``, a server API key) and sends
``follow`` and ``unfollow`` commands (JSON, binary frames). For each followed channel the home
subscribes a waiter to its hub and streams ``events`` frames: the stored event payloads after
the relay's offset, read from the recent window, else the store
(:meth:`handlers.replay.Replay.catch_up`, the same read a client's ``since`` recovery makes), at most :data:`BATCH` per frame, in offset
order. The first frame of a follow is sent even when empty: its ``last`` tells the relay where
the channel ends, so it knows when it has caught up. Then each wake (an event on the channel)
reads again from the last offset sent: nothing is skipped, whatever the wakes.

Bounds: at most ``max_channels`` follows per link (one more is answered ``refused``); each
stream awaits the socket's drain before reading more, so a slow link holds one frame per
stream, not a queue.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
import orjson
from aiohttp import WSMsgType, web

from gateway.fanout.hub import Hub
from handlers.base import Services
from handlers.channels import parse_channel
from handlers.errors import OpError
from storage.errors import Unavailable

log = logging.getLogger(__name__)

BATCH = 500
"""Events per ``events`` frame."""
RETRY = 1.0
"""Seconds before a stream whose read failed (the store or Redis down) reads again."""
HEARTBEAT = 10.0
"""Seconds between pings on a link; a link silent for a round after one is closed."""
MAX_COMMAND_BYTES = 4096


class Follow(msgspec.Struct, tag="follow", tag_field="op"):
    channel: str
    since: int = 0
    epoch: str = ""
    ref: int = 0
    """The relay's number for this follow, echoed in its frames: frames of an earlier follow
    of the same channel still on the way are told apart."""


class Unfollow(msgspec.Struct, tag="unfollow", tag_field="op"):
    channel: str
    ref: int = 0
    """The follow it ends: a later follow of the channel (sent before this arrived) stays."""


class Events(msgspec.Struct, tag="events", tag_field="op"):
    """Stored events of one channel after the follow's offset, oldest first."""

    channel: str
    epoch: str
    last: int
    """The channel's last offset at the home when this was read."""
    ref: int
    events: list[msgspec.Raw]
    """Each the ``event`` payload the home's own subscribers got, byte for byte."""


class Refused(msgspec.Struct, tag="refused", tag_field="op"):
    channel: str
    message: str
    ref: int


COMMANDS = msgspec.json.Decoder(Follow | Unfollow)
ANSWERS = msgspec.json.Decoder(Events | Refused)


class _Wake:
    """A hub subscriber that only notes that the channel had an event."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def deliver(self, frame: bytes) -> None:
        self.event.set()


class HomeLink:
    """One relay's link: its follows, each a task streaming one channel."""

    def __init__(
        self, ws: web.WebSocketResponse, services: Services, hub: Hub, *, max_channels: int
    ) -> None:
        self._ws = ws
        self._services = services
        self._hub = hub
        self._max_channels = max_channels
        self._streams: dict[str, tuple[int, asyncio.Task[None]]] = {}
        """Channel -> (the follow's ref, its stream)."""
        self._lock = asyncio.Lock()

    @property
    def following(self) -> int:
        return len(self._streams)

    async def run(self) -> None:
        """Serve the link until the relay closes it (or the node shuts down)."""
        try:
            async for message in self._ws:
                if message.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                    data = message.data
                    await self._command(data if isinstance(data, bytes) else data.encode())
                elif message.type is WSMsgType.ERROR:
                    break
        finally:
            streams = [task for _ref, task in self._streams.values()]
            self._streams.clear()
            for task in streams:
                task.cancel()
            await asyncio.gather(*streams, return_exceptions=True)

    async def close(self) -> None:
        await self._ws.close()

    async def _command(self, data: bytes) -> None:
        try:
            command = COMMANDS.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("region link: ignoring a malformed command (%s)", exc)
            return
        current = self._streams.get(command.channel)
        if isinstance(command, Unfollow):
            if current is not None and current[0] == command.ref:
                del self._streams[command.channel]
                current[1].cancel()
            return
        if current is not None:
            del self._streams[command.channel]
            current[1].cancel()
        try:
            parse_channel(command.channel)
        except OpError as exc:
            await self._refuse(command, exc.message)
            return
        if len(self._streams) >= self._max_channels:
            await self._refuse(command, f"a link follows at most {self._max_channels} channels")
            return
        task = asyncio.get_running_loop().create_task(
            self._stream(command.channel, command.since, command.epoch, command.ref)
        )
        self._streams[command.channel] = (command.ref, task)

    async def _refuse(self, command: Follow, message: str) -> None:
        refused = {"op": "refused", "channel": command.channel, "message": message}
        await self._send(orjson.dumps({**refused, "ref": command.ref}))

    async def _send(self, data: bytes) -> None:
        async with self._lock:  # one frame at a time; each waits for the socket's drain
            await self._ws.send_bytes(data)

    async def _stream(self, channel: str, since: int, epoch: str, ref: int) -> None:
        try:
            await self._follow(channel, since, epoch, ref)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The hub could not subscribe, a frame could not be sent...: the relay cannot tell
            # what it missed, so the link resets and it follows everything again with since.
            log.exception("region link: following %s failed; closing the link", channel)
            await self._ws.close()

    async def _follow(self, channel: str, since: int, epoch: str, ref: int) -> None:
        wake = _Wake()
        await self._hub.subscribe(channel, wake)  # before the first read: no event falls between
        try:
            first = True
            while True:
                wake.event.clear()
                try:
                    found = await self._services.replay.catch_up(channel, since, BATCH)
                except (Unavailable, OSError, TimeoutError) as exc:
                    log.warning("region link: reading %s failed (%s); retrying", channel, exc)
                    await asyncio.sleep(RETRY)
                    continue
                if epoch and found.epoch and found.epoch != epoch:
                    since, epoch = 0, found.epoch  # the channel's history was reset: resend it
                    continue
                events = [(offset, payload) for offset, payload in found.events if offset > since]
                if events or first:
                    first = False
                    payloads = [payload for _offset, payload in events]
                    await self._send(_events_frame(channel, found.epoch, found.last, payloads, ref))
                if events:
                    since, epoch = events[-1][0], found.epoch
                    continue
                await wake.event.wait()
        finally:
            self._hub.unsubscribe(channel, wake)


def _events_frame(channel: str, epoch: str, last: int, events: list[bytes], ref: int) -> bytes:
    frame: dict[str, Any] = {
        "op": "events",
        "channel": channel,
        "epoch": epoch,
        "last": last,
        "ref": ref,
        "events": [orjson.Fragment(payload) for payload in events],
    }
    return orjson.dumps(frame)


class HomeLinks:
    """Every link this node serves, so a shutdown can close them."""

    def __init__(self, *, max_channels: int) -> None:
        self.max_channels = max_channels
        self._links: set[HomeLink] = set()

    @property
    def count(self) -> int:
        return len(self._links)

    async def serve(
        self, request: web.Request, services: Services, hub: Hub
    ) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(
            heartbeat=HEARTBEAT, compress=False, max_msg_size=MAX_COMMAND_BYTES
        )
        await ws.prepare(request)
        link = HomeLink(ws, services, hub, max_channels=self.max_channels)
        self._links.add(link)
        try:
            await link.run()
        finally:
            self._links.discard(link)
        return ws

    async def close(self) -> None:
        await asyncio.gather(*(link.close() for link in list(self._links)), return_exceptions=True)
