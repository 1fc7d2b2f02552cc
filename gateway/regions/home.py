"""The home side of a region link: another region's relay follows channels homed here.

The relay opens one WebSocket (``GET /server/v1/regions/link``, a server API key) and sends
``follow`` and ``unfollow`` commands (JSON, binary frames). For each followed channel the home
subscribes a waiter to its hub and streams ``events`` frames: the stored event payloads after
the relay's offset, read from the recent window, else the store
(:meth:`handlers.replay.Replay.catch_up`, the same read a client's ``since`` recovery makes), at most :data:`BATCH` per frame, in offset
order. The first frame of a follow is sent even when empty: its ``last`` tells the relay where
the channel ends, so it knows when it has caught up. Then each wake (an event on the channel)
reads again from the last offset sent: nothing is skipped, whatever the wakes.

Ephemeral pushes cross too (:mod:`gateway.regions.pushes`): the waiter of each followed
channel is also a hub tap, so the channel's pushes (typing, read, join/leave) go to the relay
as ``push`` frames, except those that came from the relay's own region (no echo: the relay
names its region in the link's ``region`` query parameter, and the hub carries each push's
origin). A relay sends the pushes made in its region on channels homed here as ``push``
commands; they are published into this region's fan-out with their origin, from where every
other region's link carries them on.

Bounds: at most ``max_channels`` follows per link (one more is answered ``refused``); each
stream awaits the socket's drain before reading more, so a slow link holds one frame per
stream, not a queue; at most :data:`~gateway.regions.pushes.MAX_QUEUED` pushes wait per link
(coalesced; newest dropped, counted).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
import orjson
from aiohttp import WSMsgType, web

from gateway.fanout.hub import Hub
from gateway.regions.pushes import PushQueue, PushStats
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


class Push(msgspec.Struct, tag="push", tag_field="op"):
    """An ephemeral push of ``channel``, either way: the payload its subscribers get."""

    channel: str
    payload: msgspec.Raw
    origin: str = ""
    """The region it was made in (in frames from the home)."""


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


COMMANDS = msgspec.json.Decoder(Follow | Unfollow | Push)
ANSWERS = msgspec.json.Decoder(Events | Refused | Push)


def push_frame(channel: str, payload: bytes, origin: str = "") -> bytes:
    frame: dict[str, Any] = {"op": "push", "channel": channel, "payload": orjson.Fragment(payload)}
    if origin:
        frame["origin"] = origin
    return orjson.dumps(frame)


class _Wake:
    """A hub subscriber that only notes that the channel had an event, and a tap that queues
    the channel's ephemeral pushes for the link (those not from the link's own region)."""

    __slots__ = ("_channel", "_link", "event")

    def __init__(self, link: HomeLink, channel: str) -> None:
        self.event = asyncio.Event()
        self._link = link
        self._channel = channel

    def deliver(self, frame: bytes) -> None:
        self.event.set()

    def push(self, payload: bytes, origin: str) -> None:
        self._link.queue_push(self._channel, payload, origin)


class HomeLink:
    """One relay's link: its follows, each a task streaming one channel."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        services: Services,
        hub: Hub,
        *,
        max_channels: int,
        region: str = "",
        stats: PushStats | None = None,
    ) -> None:
        self._ws = ws
        self._services = services
        self._hub = hub
        self._max_channels = max_channels
        self.region = region
        """The relay's region ("" if it did not say): its own pushes are not sent back."""
        self.stats = stats if stats is not None else PushStats()
        self._pushes = PushQueue(self.stats)
        self._streams: dict[str, tuple[int, asyncio.Task[None]]] = {}
        """Channel -> (the follow's ref, its stream)."""
        self._lock = asyncio.Lock()

    @property
    def following(self) -> int:
        return len(self._streams)

    async def run(self) -> None:
        """Serve the link until the relay closes it (or the node shuts down)."""
        pusher = asyncio.get_running_loop().create_task(self._send_pushes())
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
            for task in [*streams, pusher]:
                task.cancel()
            await asyncio.gather(*streams, pusher, return_exceptions=True)
            self._pushes.clear()

    async def close(self) -> None:
        await self._ws.close()

    async def _command(self, data: bytes) -> None:
        try:
            command = COMMANDS.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("region link: ignoring a malformed command (%s)", exc)
            return
        if isinstance(command, Push):
            await self._take_push(command)
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

    async def _take_push(self, command: Push) -> None:
        """A push made in the relay's region on a channel homed here: into this region's
        fan-out, marked with its origin (the links to the other regions carry it on)."""
        plan = self._services.regions
        try:
            channel = parse_channel(command.channel)
        except OpError:
            channel = None
        if plan is None or channel is None or plan.home(channel) != plan.local:
            log.warning("region link: ignoring a push to %s (not homed here)", command.channel)
            return
        self.stats.received += 1
        await self._hub.publish(command.channel, bytes(command.payload), 0, self.region)

    def queue_push(self, channel: str, payload: bytes, origin: str) -> None:
        if origin and origin == self.region:
            return  # it came from the relay's region: its subscribers there have it
        self._pushes.put(channel, payload, origin)

    async def _send_pushes(self) -> None:
        """Write the queued pushes, one frame at a time (a stored frame waits for one at most)."""
        plan = self._services.regions
        local = plan.local if plan is not None else ""
        try:
            while True:
                channel, payload, origin = await self._pushes.get()
                await self._send(push_frame(channel, payload, origin or local))
                self.stats.sent += 1
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("region link: a push could not be sent; closing the link")
            await self._ws.close()

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
        wake = _Wake(self, channel)
        await self._hub.subscribe(channel, wake)  # before the first read: no event falls between
        self._hub.tap(channel, wake)
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
                events = found.events  # all after since (Replay.catch_up's contract)
                if events or first:
                    first = False
                    payloads = [payload for _offset, payload in events]
                    await self._send(_events_frame(channel, found.epoch, found.last, payloads, ref))
                if events:
                    since, epoch = events[-1][0], found.epoch
                    continue
                await wake.event.wait()
        finally:
            self._hub.untap(channel, wake)
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
        self.push_stats = PushStats()
        """Pushes over every link this node serves (the home side)."""

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
        link = HomeLink(
            ws,
            services,
            hub,
            max_channels=self.max_channels,
            region=request.query.get("region", ""),
            stats=self.push_stats,
        )
        self._links.add(link)
        try:
            await link.run()
        finally:
            self._links.discard(link)
        return ws

    async def close(self) -> None:
        await asyncio.gather(*(link.close() for link in list(self._links)), return_exceptions=True)
