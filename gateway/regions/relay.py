"""This region's side of the links: channels homed elsewhere, relayed into the local fan-out.

:class:`RegionalBroker` wraps the node's broker: when the hub subscribes the node to a channel
whose home is another region (its first local subscriber or long poll), the relay follows the
channel; when the hub unsubscribes (the last one left), it stops. A first follow waits, at most
the region timeout, until the relay has caught up with the home once, so the subscriber's
``subscribe`` reply gives the home's position rather than a stale copy's.

:class:`Relay` keeps one link per home region (:class:`_Link`: a WebSocket to the home's
``/server/v1/regions/link``, :mod:`gateway.regions.home`). On connecting, it follows every
wanted channel with ``since`` = the local store's position of it. Each ``events`` frame is
written into the local store (:meth:`storage.base.MessageReplica.replicate`: the home's ids,
offsets and epoch, contiguous only), then each event past what this node already relayed is
published into the local fan-out with its home offset (local subscribers, the regional Redis
window, the region's other nodes), before the next frame is read. A lost link reconnects after
a capped, jittered backoff and follows everything again from the store's position: nothing
lost, nothing doubled.

Ephemeral pushes (offset 0: typing, read, join/leave) cross both ways over the same link
(:mod:`gateway.regions.pushes`): one this node publishes on a remote-home channel is queued for
the home's link (only the node that made it sends it, so the home gets it once); a ``push``
frame from the home is handed to this node's subscribers of the channel only (every node with
subscribers follows the channel over its own link, so it does not cross the regional broker
again, and nothing the relay injects is published, so nothing goes back).

Bounds: at most ``max_channels`` followed channels per node (the next is not followed: logged
and counted; its subscribers get what the local copy has); one frame handled at a time per link
(TCP holds the rest back at the home); at most :data:`~gateway.regions.pushes.MAX_QUEUED`
pushes wait per link (coalesced; the newest dropped when full, and every push made while the
link is down, counted).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
import msgspec
import orjson

from gateway.fanout.broker import Broker, Deliver, Recent
from gateway.fanout.hub import INTERNAL_PREFIXES
from gateway.regions.home import ANSWERS, HEARTBEAT, MAX_COMMAND_BYTES, Events, Push, push_frame
from gateway.regions.pushes import PushQueue, PushStats
from handlers.channels import parse_channel
from handlers.errors import OpError
from handlers.regions import RegionPlan
from storage.base import ChannelPosition, Message, MessageReplica
from storage.errors import Unavailable

log = logging.getLogger(__name__)

LINK_PATH = "/server/v1/regions/link"
BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0
MAX_FRAME_BYTES = 64 * 1024 * 1024
"""An ``events`` frame holds at most 500 events (``home.BATCH``) of at most 256 KiB each."""

Publish = Callable[[str, bytes, int, str, int], Awaitable[None]]
"""``Fanout.publish(channel, payload, offset, epoch, stored_at)``."""
DeliverPush = Callable[[str, bytes, str], None]
"""``Hub.deliver_push(channel, payload, origin)``: to this node's subscribers only."""


class ReplicaStore(MessageReplica, Protocol):
    async def position(self, channel: str) -> ChannelPosition: ...


class _Event(msgspec.Struct):
    """The stored message inside an ``event`` payload (``handlers.messages.message_fields``)."""

    channel: str
    offset: int
    message_id: str
    sender: str = msgspec.field(name="from")
    ts: int = 0
    data: msgspec.Raw = msgspec.Raw(b"{}")
    client_msg_id: str | None = None


_EVENT = msgspec.json.Decoder(_Event)


@dataclass(slots=True)
class _Wanted:
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the relay caught up with the home (or the link is down: nobody waits)."""
    relayed: int = 0
    """The last offset this node published into the fan-out."""
    ref: int = 0
    """The number of the latest follow sent: frames of earlier ones are ignored."""
    live: bool = False
    """Caught up with the home over a link that is up: the local copy is current (up to the
    events on their way), so history is read from it."""


@dataclass(slots=True)
class RelayStats:
    follows: int = 0
    follows_refused: int = 0
    """Channels not followed: over this node's bound, or refused by the home."""
    relayed: int = 0
    """Events published into the local fan-out."""
    connects: int = 0
    link_failures: int = 0


class Relay:
    """Channels with a remote home that this node's subscribers want, linked to their homes."""

    def __init__(
        self,
        plan: RegionPlan,
        urls: dict[str, str],
        key: str,
        replica: ReplicaStore,
        *,
        timeout: float,
        max_channels: int,
    ) -> None:
        self.plan = plan
        self._urls = urls
        self._headers = {"Authorization": f"Bearer {key}"}
        self.replica = replica
        self.timeout = timeout
        self._max_channels = max_channels
        self.publish: Publish | None = None
        """Where relayed events go (the hub's publish; set once the hub exists)."""
        self.deliver_push: DeliverPush | None = None
        """Where pushes from the homes go (the hub's deliver_push; set once the hub exists)."""
        self._links: dict[str, _Link] = {}
        self._session: aiohttp.ClientSession | None = None
        self.stats = RelayStats()
        self.push_stats = PushStats()

    @property
    def following(self) -> int:
        return sum(len(link.wanted) for link in self._links.values())

    def connected(self, region: str) -> bool:
        link = self._links.get(region)
        return link is not None and link.ws is not None

    def is_fresh(self, channel: str) -> bool:
        """Whether this node follows the channel live: its local copy is current."""
        home = self.home_of(channel)
        link = self._links.get(home) if home is not None else None
        if link is None or link.ws is None:
            return False
        wanted = link.wanted.get(channel)
        return wanted is not None and wanted.live

    def home_of(self, channel: str) -> str | None:
        """The channel's home when it is another region; None for local and internal ones."""
        if channel.startswith(INTERNAL_PREFIXES):
            return None  # the gateway's own channels (presence, control): regional, no parse
        try:
            parsed = parse_channel(channel)
        except OpError:
            return None  # the gateway's own channels (presence, control): regional
        return self.plan.remote_home(parsed)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))

    async def close(self) -> None:
        links = list(self._links.values())
        self._links.clear()
        for link in links:
            link.stop()
        await asyncio.gather(*(link.stopped() for link in links), return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def follow(self, channel: str) -> None:
        home = self.home_of(channel)
        if home is None or self._session is None:
            return
        if self.following >= self._max_channels:
            self.stats.follows_refused += 1
            log.warning("relay: not following %s: %d channels followed", channel, self.following)
            return
        link = self._links.get(home)
        if link is None:
            url = f"{self._urls[home]}{LINK_PATH}?region={self.plan.local}"
            link = self._links[home] = _Link(self, home, url)
            link.start(self._session, self._headers)
        self.stats.follows += 1
        await link.follow(channel)

    def unfollow(self, channel: str) -> None:
        home = self.home_of(channel)
        link = self._links.get(home) if home is not None else None
        if link is not None:
            link.unfollow(channel)

    def push(self, channel: str, payload: bytes) -> None:
        """An ephemeral push this node made: to the channel's home when it is another region
        (dropped, counted, when the link to it is down or was never opened: best-effort)."""
        home = self.home_of(channel)
        if home is None:
            return
        link = self._links.get(home)
        if link is None or link.ws is None:
            self.push_stats.dropped += 1
            return
        link.pushes.put(channel, payload)


class _Link:
    """One WebSocket to one home region, and the channels followed over it."""

    def __init__(self, relay: Relay, home: str, url: str) -> None:
        self._relay = relay
        self.home = home
        self._url = url
        self.wanted: dict[str, _Wanted] = {}
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self._refs = itertools.count(1)
        self.pushes = PushQueue(relay.push_stats)
        self.tried = asyncio.Event()
        """Set once the first connection attempt ended (linked, or failed)."""

    def start(self, session: aiohttp.ClientSession, headers: dict[str, str]) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(session, headers), name=f"region-link-{self.home}"
        )

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for task in self._sends:
            task.cancel()

    async def stopped(self) -> None:
        tasks = [*self._sends, *([self._task] if self._task else [])]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def follow(self, channel: str) -> None:
        wanted = self.wanted.get(channel)
        if wanted is None:
            wanted = self.wanted[channel] = _Wanted()
        try:
            async with asyncio.timeout(self._relay.timeout):
                if not self.tried.is_set():
                    # A new link: on connecting it follows every wanted channel, this one too
                    # (unless it was added after the link listed them: ref is still 0 then).
                    await self.tried.wait()
                    if self.ws is not None and wanted.ref == 0:
                        await self._send_follow(channel, wanted)
                elif self.ws is not None:
                    await self._send_follow(channel, wanted)
                if self.ws is None:
                    return  # the link is down: the local copy answers; catch-up comes later
                await wanted.ready.wait()
        except (aiohttp.ClientError, OSError, TimeoutError, Unavailable) as exc:
            log.info("relay: first catch-up of %s from %s not done (%r)", channel, self.home, exc)

    def unfollow(self, channel: str) -> None:
        wanted = self.wanted.pop(channel, None)
        if wanted is None or self.ws is None:
            return
        # Sent from a task, so a follow of the channel may overtake it: the ref says which
        # follow it ends, and the home keeps a later one.
        unfollow = {"op": "unfollow", "channel": channel, "ref": wanted.ref}
        task = asyncio.get_running_loop().create_task(self._send(orjson.dumps(unfollow)))
        self._sends.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sends.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("relay: an unfollow was not sent (%s); the link resets", task.exception())

    async def _send(self, data: bytes) -> None:
        ws = self.ws
        if ws is None:
            return
        async with self._lock:
            await ws.send_bytes(data)

    async def _send_follow(self, channel: str, wanted: _Wanted) -> None:
        position = await self._relay.replica.position(channel)
        wanted.relayed = max(wanted.relayed, position.offset)
        wanted.ref = next(self._refs)
        wanted.live = False
        follow = {"op": "follow", "channel": channel, "since": position.offset}
        await self._send(orjson.dumps({**follow, "epoch": position.epoch, "ref": wanted.ref}))

    async def _run(self, session: aiohttp.ClientSession, headers: dict[str, str]) -> None:
        backoff = BACKOFF_MIN
        stats = self._relay.stats
        while True:
            try:
                async with session.ws_connect(
                    self._url,
                    headers=headers,
                    heartbeat=HEARTBEAT,
                    compress=0,
                    max_msg_size=MAX_FRAME_BYTES,
                    timeout=aiohttp.ClientWSTimeout(ws_close=self._relay.timeout),
                ) as ws:
                    self.ws = ws
                    stats.connects += 1
                    backoff = BACKOFF_MIN
                    log.info(
                        "relay: linked to %s, following %d channels", self.home, len(self.wanted)
                    )
                    for channel, wanted in list(self.wanted.items()):
                        await self._send_follow(channel, wanted)
                    self.tried.set()
                    pusher = asyncio.get_running_loop().create_task(self._send_pushes(ws))
                    try:
                        async for message in ws:
                            if message.type is aiohttp.WSMsgType.BINARY:
                                await self._on_frame(message.data)
                            elif message.type is aiohttp.WSMsgType.ERROR:
                                break
                    finally:
                        pusher.cancel()
                        await asyncio.gather(pusher, return_exceptions=True)
            except (aiohttp.ClientError, OSError, TimeoutError, Unavailable) as exc:
                stats.link_failures += 1
                log.warning("relay: link to %s lost (%s)", self.home, exc.__class__.__name__)
            except Exception:
                # A frame it could not handle (the store refused a write...): start over with
                # since, which loses nothing, rather than leave the channels unfollowed.
                stats.link_failures += 1
                log.exception("relay: link to %s failed; reconnecting", self.home)
            finally:
                self.ws = None
                self.pushes.clear()  # stale by the time the link is back
                self.tried.set()
                for wanted in self.wanted.values():
                    wanted.live = False
                    wanted.ready.set()  # nobody waits for a link that is down
            await asyncio.sleep(backoff * (0.5 + random.random() / 2))
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _send_pushes(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Write the queued pushes, one frame at a time, through the send lock (a follow
        waits for one at most); one that does not fit the home's command size is dropped."""
        stats = self._relay.push_stats
        try:
            while True:
                channel, payload, _origin = await self.pushes.get()
                frame = push_frame(channel, payload)
                if len(frame) > MAX_COMMAND_BYTES:
                    stats.dropped += 1
                    continue
                async with self._lock:
                    await ws.send_bytes(frame)
                stats.sent += 1
        except (aiohttp.ClientError, OSError) as exc:
            log.info("relay: a push to %s was not sent (%s); the link resets", self.home, exc)
            await ws.close()

    async def _on_frame(self, data: bytes) -> None:
        try:
            frame = ANSWERS.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("relay: ignoring a malformed frame from %s (%s)", self.home, exc)
            return
        if isinstance(frame, Push):
            deliver = self._relay.deliver_push
            if frame.channel in self.wanted and deliver is not None:
                self._relay.push_stats.received += 1
                deliver(frame.channel, bytes(frame.payload), frame.origin or self.home)
            return
        wanted = self.wanted.get(frame.channel)
        if wanted is None or frame.ref != wanted.ref:
            return  # unfollowed meanwhile, or an answer to an earlier follow
        if not isinstance(frame, Events):
            self._relay.stats.follows_refused += 1
            log.warning("relay: %s refused %s: %s", self.home, frame.channel, frame.message)
            wanted.ready.set()
            return
        await self._relay_events(frame, wanted)

    async def _relay_events(self, frame: Events, wanted: _Wanted) -> None:
        channel = frame.channel
        events: list[tuple[Message, bytes]] = []
        for raw in frame.events:
            payload = bytes(raw)
            event = _EVENT.decode(payload)
            message = Message(
                id=event.message_id,
                channel=channel,
                offset=event.offset,
                sender=event.sender,
                data=bytes(event.data),
                client_msg_id=event.client_msg_id,
                ts=event.ts,
            )
            events.append((message, payload))
        if events:
            position = await self._relay.replica.replicate(
                channel, frame.epoch, [message for message, _payload in events]
            )
        else:
            position = await self._relay.replica.position(channel)
        if position.epoch != frame.epoch and frame.epoch:
            return  # cannot happen: replicate adopts the home's epoch
        publish = self._relay.publish
        for message, payload in events:
            if wanted.relayed < message.offset <= position.offset and publish is not None:
                await publish(channel, payload, message.offset, frame.epoch, message.ts)
                wanted.relayed = message.offset
                self._relay.stats.relayed += 1
        if events and position.offset < events[-1][0].offset:
            # The copy could not take them all (a gap): ask again from where it ends.
            log.warning("relay: %s stopped at %d; following again", channel, position.offset)
            await self._send_follow(channel, wanted)
            return
        if position.offset >= frame.last:
            wanted.live = True
            wanted.ready.set()


class RegionalBroker:
    """The node's broker, with remote-home channels followed while the node subscribes them."""

    def __init__(self, inner: Broker, relay: Relay) -> None:
        self.inner = inner
        self.relay = relay

    async def start(self, deliver: Deliver, reconnected: Callable[[], None]) -> None:
        await self.inner.start(deliver, reconnected)

    async def close(self) -> None:
        await self.inner.close()

    async def subscribe(self, channel: str) -> None:
        await self.inner.subscribe(channel)
        await self.relay.follow(channel)

    def unsubscribe(self, channel: str) -> None:
        self.inner.unsubscribe(channel)
        self.relay.unfollow(channel)

    async def publish(
        self, channel: str, payload: bytes, offset: int = 0, epoch: str = "", stored_at: int = 0
    ) -> None:
        await self.inner.publish(channel, payload, offset, epoch, stored_at)
        if offset == 0 and not epoch:
            # An ephemeral push made here (one with an origin came from another region): the
            # home of a remote-home channel gets it too, and carries it to the other regions.
            self.relay.push(channel, payload)

    async def recent(self, channel: str, since: int, limit: int) -> Recent | None:
        return await self.inner.recent(channel, since, limit)

    async def ping(self) -> bool:
        return await self.inner.ping()
