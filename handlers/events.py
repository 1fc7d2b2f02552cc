"""Clickstream intake: what people do in the app, validated, deduplicated, enriched, buffered.

A closed set of event types, each with its own schema (a tagged union on ``type``); every event
carries ``event_id`` (the client's id, for dedupe) and ``client_ts`` (milliseconds since the
epoch on the phone's clock). The server adds ``user_id``, ``country``, ``node``, ``region`` and
``server_ts``; fields a client sends that its schema does not name are dropped, so a client
cannot set them (nor ``user_id``).

One call takes a batch (up to :data:`MAX_BATCH` events; a single event is a batch of one). Each
item is judged on its own: a bad item is refused with ``invalid_params`` and its reason, the
rest are taken. A repeated ``(user, event_id)`` is acknowledged as a duplicate and not taken
again (a bounded per-node LRU: :class:`SeenEvents`). Taken events go to a :class:`Collector`
(the gateway's bounded per-node buffer, ``gateway.clickstream``), which never waits: when it is
full the items it could not take are refused with ``server_busy`` (retryable), and if it took
none the whole call is (nothing of it was taken or remembered, so the client resends all).

``track_operation`` makes the ``track`` op of one node. No transport lives here.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol, Union

import msgspec

from handlers.base import Context, Operation, Params, Result, operation
from handlers.errors import INVALID_PARAMS, SERVER_BUSY, ErrorKind, OpError

MAX_BATCH = 500
"""Events one call may carry."""
MAX_BODY_BYTES = 1024 * 1024
"""The largest ``POST /v1/events`` body (a phone flushing its offline buffer)."""
MAX_CLIENT_AGE_MS = 30 * 86400 * 1000
"""Events older than this (by their client time) are refused: an offline buffer of a month."""
MAX_CLIENT_AHEAD_MS = 86400 * 1000
"""Events further ahead of the server's clock than this are refused (a phone's clock is off)."""
MAX_SECONDS_WATCHED = 86400.0

EventId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
ClientTs = Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)]
VideoId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS_WATCHED)]
Query = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
AppVersion = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.+-]{1,32}$")]


class Event(msgspec.Struct, kw_only=True, tag_field="type", forbid_unknown_fields=False):
    """Fields every event has."""

    event_id: EventId
    client_ts: ClientTs


class AppOpen(Event, tag="app_open"):
    platform: Literal["ios", "android", "web"] | None = None
    app_version: AppVersion | None = None
    cold: bool = True
    """A cold start (the process was not running) rather than a return from the background."""


class ViewStart(Event, tag="view_start"):
    video_id: VideoId
    source: Literal["feed", "following", "profile", "search", "share", "trending", "other"] = "feed"


class WatchProgress(Event, tag="watch_progress"):
    video_id: VideoId
    seconds_watched: Seconds
    """Seconds watched since the view's previous ``watch_progress`` (or its ``view_start``): a
    video's watch time is the sum of ``seconds_watched`` over its progress and end events."""
    position: Seconds | None = None
    """The playhead, seconds into the video."""


class ViewEnd(Event, tag="view_end"):
    video_id: VideoId
    seconds_watched: Seconds
    """Seconds watched since the view's last ``watch_progress`` (or its ``view_start``)."""
    completed: bool = False
    """The video played to its end at least once during the view."""


class Swipe(Event, tag="swipe"):
    video_id: VideoId
    """The video swiped away from."""
    direction: Literal["up", "down", "left", "right"]
    next_video_id: VideoId | None = None


class Like(Event, tag="like"):
    video_id: VideoId
    liked: bool = True
    """False: the like was taken back."""


class Share(Event, tag="share"):
    video_id: VideoId
    target: Literal["dm", "group", "external"]


class Search(Event, tag="search"):
    query: Query
    results: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] | None = None


EVENT_TYPES: tuple[type[Event], ...] = (
    AppOpen,
    ViewStart,
    WatchProgress,
    ViewEnd,
    Swipe,
    Like,
    Share,
    Search,
)
AnyEvent = Union[EVENT_TYPES]  # type: ignore[valid-type]  # noqa: UP007
TYPE_NAMES: tuple[str, ...] = tuple(str(t.__struct_config__.tag) for t in EVENT_TYPES)

_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(AnyEvent)
_encoder = msgspec.json.Encoder()


class _Server(msgspec.Struct):
    """What the server adds to every event (encoded after the event's own fields)."""

    user_id: str
    country: str | None
    node: str
    region: str
    server_ts: int


@dataclass(frozen=True, slots=True)
class Record:
    """One accepted event on its way to a sink: a JSON line and its partition key (the user)."""

    partition_key: str
    data: bytes
    """The enriched event as one JSON object, ending in a newline."""


class Collector(Protocol):
    """Where taken events go (the gateway's buffer); it never waits and never does I/O."""

    def offer(self, records: Sequence[Record]) -> int:
        """Take the first records that fit and return how many; the rest are refused."""
        ...


class SeenEvents:
    """The last ``size`` (user, event id) pairs taken on this node (LRU); ``size`` 0 = off."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._keys: OrderedDict[tuple[str, str], None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: tuple[str, str]) -> bool:
        if key not in self._keys:
            return False
        self._keys.move_to_end(key)
        return True

    def add(self, key: tuple[str, str]) -> None:
        if self._size <= 0:
            return
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self._size:
            self._keys.popitem(last=False)


@dataclass(slots=True)
class IntakeStats:
    """What the intake counted, for the gateway's metrics (taken and busy: the buffer's)."""

    duplicates: int = 0
    invalid: int = 0


def _refusal(index: int, event_id: str | None, kind: ErrorKind, message: str) -> dict[str, Any]:
    refused: dict[str, Any] = {"index": index, "code": kind.code, "message": message}
    refused["retryable"] = kind.retryable
    if event_id is not None:
        refused["event_id"] = event_id
    return refused


def _event_id_of(raw: bytes) -> str | None:
    """The item's ``event_id`` when it has a usable one (to name a refused item)."""
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    if isinstance(doc, dict):
        value = doc.get("event_id")
        if isinstance(value, str) and 0 < len(value) <= 64:
            return value
    return None


class Intake:
    """Judge, dedupe and enrich batches of events for one node; hand them to the collector."""

    def __init__(
        self,
        collector: Collector,
        *,
        node: str,
        region: str,
        dedupe_size: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.collector = collector
        self.node = node
        self.region = region
        self.seen = SeenEvents(dedupe_size)
        self.stats = IntakeStats()
        self._clock = clock
        self.observer: Callable[[Event, str | None], None] | None = None
        """Told of every event taken, with the caller's country (the gateway's tally of views,
        watch time and trending); it must not block."""

    def check(self, event: Event, now_ms: int) -> str | None:
        """Return why a well-formed event is refused, or None."""
        if event.client_ts < now_ms - MAX_CLIENT_AGE_MS:
            return "client_ts is older than 30 days - at `$.client_ts`"
        if event.client_ts > now_ms + MAX_CLIENT_AHEAD_MS:
            return "client_ts is more than a day ahead of the server - at `$.client_ts`"
        if isinstance(event, Search) and not event.query.strip():
            return "query must not be blank - at `$.query`"
        return None

    def encode(self, event: Event, user_id: str, country: str | None, now_ms: int) -> Record:
        """The event's JSON line: its own fields (``type`` first), then the server's."""
        own = _encoder.encode(event)
        server = _encoder.encode(_Server(user_id, country, self.node, self.region, now_ms))
        return Record(user_id, own[:-1] + b"," + server[1:] + b"\n")

    def take(self, user_id: str, country: str | None, items: Sequence[bytes]) -> Result:
        """Judge each item; give the good, new ones to the collector; say what was refused.

        Raises ``server_busy`` when the collector took none of the good ones.
        """
        now_ms = int(self._clock() * 1000)
        refused: list[dict[str, Any]] = []
        records: list[Record] = []
        events: list[Event] = []
        taken_keys: list[tuple[int, str]] = []
        in_batch: set[str] = set()
        duplicates = 0
        for index, raw in enumerate(items):
            try:
                event = _decoder.decode(raw)
            except msgspec.DecodeError as exc:
                refused.append(_refusal(index, _event_id_of(raw), INVALID_PARAMS, str(exc)))
                continue
            problem = self.check(event, now_ms)
            if problem is not None:
                refused.append(_refusal(index, event.event_id, INVALID_PARAMS, problem))
                continue
            if event.event_id in in_batch or (user_id, event.event_id) in self.seen:
                duplicates += 1
                continue
            in_batch.add(event.event_id)
            records.append(self.encode(event, user_id, country, now_ms))
            events.append(event)
            taken_keys.append((index, event.event_id))
        self.stats.invalid += len(refused)
        taken = self.collector.offer(records) if records else 0
        if records and taken == 0:
            raise OpError(SERVER_BUSY, "the event buffer of this node is full; retry shortly")
        self.stats.duplicates += duplicates
        for _index, event_id in taken_keys[:taken]:
            self.seen.add((user_id, event_id))
        if self.observer is not None:
            for event in events[:taken]:
                self.observer(event, country)
        for index, event_id in taken_keys[taken:]:
            message = "the event buffer of this node is full; retry shortly"
            refused.append(_refusal(index, event_id, SERVER_BUSY, message))
        refused.sort(key=lambda item: int(item["index"]))
        return {"accepted": taken, "duplicates": duplicates, "refused": refused}


Batch = Annotated[list[msgspec.Raw], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class TrackParams(Params, tag="track"):
    events: Batch


class EventsBody(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /v1/events``: the same batch as the ``track`` op's."""

    events: Batch


def track_operation(
    intake: Intake, country_of: Callable[[Context], str | None]
) -> Operation[TrackParams]:
    """Make this node's ``track`` op: a batch of events into ``intake``.

    ``country_of`` tells the caller's country (the transport knows it, from the country gate).
    """

    async def track(ctx: Context, params: TrackParams) -> Result:
        return intake.take(ctx.user_id, country_of(ctx), [bytes(raw) for raw in params.events])

    return operation(TrackParams)(track)
