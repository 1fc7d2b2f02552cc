"""Locust users for the gateway: WebSocket chat users, REST-fallback users, video viewers.

Every user registers once through ``POST /v1/auth/register`` (one scrypt hash per simulated
user), then talks to one of the cluster's nodes. Request names start with the phase the shape
is in ("surge room"), so locust's own CSV splits every figure per phase:

| type | name (after the phase) | what is timed |
| --- | --- | --- |
| AUTH | register | the register request |
| WS | connect / reconnect | the WebSocket handshake |
| WS | subscribe / group-create | the subscribe reply / ``POST /v1/groups`` |
| WS | dm, group, room | one message, send → arrival as an ``event`` push (own or a peer's) |
| WS | replayed | the same for events replayed after a reconnect (``subscribe`` with ``since``) |
| WS | publish / publish-retry | publish → reply (the message is stored) / a resend after a drop |
| WS | history, backfill | a history read / the catch-up reads after a reconnect |
| WS | storm-reconnect | storm drop → socket back, resubscribed and caught up |
| WS | missed, duplicate | failures only: offsets never received / received twice |
| WS | disconnect, unsubscribed | failures only: a drop nobody asked for; a subscription ended |
| REST | publish, history, events | ``POST``/``GET .../messages``; a long poll that failed |
| POLL | room | one message, send → arrival through the long poll |
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gevent
import requests
import websocket
from gevent.event import AsyncResult
from locust import User, between, constant, task
from locust.env import Environment
from locust.exception import StopUser
from shape import STORM_WINDOW, Config, Plan
from tracking import OffsetTracker

PASSWORD = "loadtest password"
REPLY_TIMEOUT = 10.0
"""Seconds a request may wait for its reply before it is a failure."""
ECHO_TIMEOUT = 10.0
"""Seconds within which a user's own message must come back as an event push."""
GAP_GRACE = 5.0
"""Seconds an offset may stay missing behind a later one before it counts as lost."""
POLL_TIMEOUT = 5
"""Long-poll wait, seconds: short, so a stopping user does not hang on it."""
GROUP_SIZE = 4
VIDEOS = 3
MAX_BACKFILL_PAGES = 20
FILLER = "moosic load test message " * 5
"""~125 characters: with the timestamp and ids, events are ~300 bytes on the wire."""


class LoadError(Exception):
    """A failure as locust reports it (the message is the failure's description)."""


@dataclass
class Storm:
    """The reconnect storm: one drop of every WebSocket client, then the count of who is back."""

    generation: int = 0
    dropped_at: float = 0.0
    expected: list[WsClient] = field(default_factory=list)
    back_after: list[float] = field(default_factory=list)
    backfilled: int = 0
    replayed: int = 0
    not_recovered: Counter[str] = field(default_factory=Counter)
    missed: int = 0
    reconnect_failures: int = 0


class Run:
    """What the users of this locust process share: settings, the clock, peers, the storm."""

    def __init__(self) -> None:
        self.config: Config | None = None
        self.plan: Plan | None = None
        self.clock: Callable[[], float] = lambda: 0.0
        self.counter = itertools.count()
        self.chat: list[WsClient] = []
        self.clients: set[WsClient] = set()
        self.storm = Storm()
        self.missed = 0
        self.duplicates = 0
        self.recovery = os.environ.get("LOADTEST_RECOVERY", "since")
        """How a reconnected client catches up: "since" (replayed pushes) or "history"."""

    def configure(self, config: Config, plan: Plan, clock: Callable[[], float]) -> None:
        self.config, self.plan, self.clock = config, plan, clock

    @property
    def hosts(self) -> tuple[str, ...]:
        assert self.config is not None
        return self.config.hosts

    @property
    def rooms(self) -> int:
        assert self.config is not None
        return max(1, self.config.baseline // 5)

    def phase(self) -> str:
        return self.plan.phase_name(self.clock()) if self.plan is not None else "warmup"

    def username(self, n: int) -> str:
        assert self.config is not None
        return f"lt{self.config.run_id}_{n}"[:32]


RUN = Run()


def fire(
    env: Environment,
    request_type: str,
    what: str,
    ms: float,
    length: int = 0,
    exception: Exception | None = None,
) -> None:
    env.events.request.fire(
        request_type=request_type,
        name=f"{RUN.phase()} {what}",
        response_time=ms,
        response_length=length,
        exception=exception,
        context={},
    )


def since(t0: float) -> float:
    """Milliseconds since ``t0`` (a ``time.perf_counter()`` reading)."""
    return (time.perf_counter() - t0) * 1000


def dm_channel(a: str, b: str) -> str:
    low, high = sorted((a, b))
    return f"dm:{low}:{high}"


class Rest:
    """REST calls to one node, each reported as a locust request."""

    def __init__(self, env: Environment, base: str) -> None:
        self.env = env
        self.base = base
        self.session = requests.Session()
        self.token = ""
        self.refresh_token = ""
        self.last_code: str | None = None
        """The error code of the last failed call."""
        self.retry_after: float | None = None

    def call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        request_type: str = "REST",
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        expect: tuple[int, ...] = (200, 201),
        timeout: float = REPLY_TIMEOUT,
        report: bool = True,
    ) -> Any:
        """Return the decoded JSON answer, or None after reporting a failure."""
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        t0 = time.perf_counter()
        try:
            response = self.session.request(
                method, self.base + path, json=body, params=params, headers=headers, timeout=timeout
            )
            answer = response.json()
        except (requests.RequestException, ValueError) as exc:
            self.last_code, self.retry_after = None, None
            fire(self.env, request_type, what, since(t0), exception=LoadError(repr(exc)))
            return None
        ms = since(t0)
        if response.status_code not in expect:
            code = answer.get("code") if isinstance(answer, dict) else None
            self.last_code = code
            try:
                self.retry_after = float(response.headers.get("retry-after", ""))
            except ValueError:
                self.retry_after = None
            error = LoadError(f"HTTP {response.status_code} {code}")
            fire(self.env, request_type, what, ms, len(response.content), error)
            return None
        if report:
            fire(self.env, request_type, what, ms, len(response.content))
        return answer

    def register(self, username: str) -> dict[str, Any] | None:
        """Register (or log in when the name is taken), waiting out ``rate_limited`` answers."""
        body = {"username": username, "password": PASSWORD}
        path, what, status = "/v1/auth/register", "register", 201
        for _attempt in range(5):
            account = self.call(
                "POST", path, what, request_type="AUTH", body=body, expect=(status,)
            )
            if account is not None:
                self.token, self.refresh_token = account["access_token"], account["refresh_token"]
                return account
            if self.last_code == "username_taken":
                path, what, status = "/v1/auth/login", "login", 200
            elif self.last_code not in ("rate_limited", "unavailable", "server_busy"):
                return None
            gevent.sleep(min(self.retry_after or 1.0, 10.0) + random.random())
        return None

    def refresh(self) -> bool:
        """Trade the refresh token for a new pair (tokens outlive no run longer than the TTL)."""
        body = {"refresh_token": self.refresh_token}
        pair = self.call(
            "POST", "/v1/auth/refresh", "refresh", request_type="AUTH", body=body, expect=(200,)
        )
        if pair is None:
            return False
        self.token, self.refresh_token = pair["access_token"], pair["refresh_token"]
        return True

    def close(self) -> None:
        self.session.close()


@dataclass
class ChannelState:
    kind: str
    tracker: OffsetTracker | None = None
    sub_offset: int | None = None
    """The channel's offset in the last subscribe reply: events above it arrive as pushes."""
    epoch: str = ""
    early: list[int] = field(default_factory=list)
    """Offsets pushed before the first subscribe reply."""


@dataclass
class Pending:
    op: str
    what: str | None
    t0: float
    result: AsyncResult | None = None
    out: Outgoing | None = None


@dataclass
class Outgoing:
    channel: str
    kind: str
    cmid: str
    data: dict[str, Any]
    sent: float


class WsClient:
    """One user's WebSocket: a reader greenlet matches replies and events; reconnects itself."""

    def __init__(self, user: User, n: int) -> None:
        self.env = user.environment
        self.n = n
        self.node = n % len(RUN.hosts)
        self.rest = Rest(self.env, RUN.hosts[self.node])
        self.username = RUN.username(n)
        self.user_id = ""
        self.ws: websocket.WebSocket | None = None
        self.ids = itertools.count(1)
        self.seq = itertools.count(1)
        self.waiting: dict[int, Pending] = {}
        self.channels: dict[str, ChannelState] = {}
        self.unacked: dict[str, Outgoing] = {}
        self.echoes: dict[str, tuple[float, str, str, int]] = {}
        self.early_echoes: set[str] = set()
        self.connected = False
        self.recovering = False
        self.closing = False
        self.greenlets: list[gevent.Greenlet] = []
        self.storm_generation = 0
        self.storm_done = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> bool:
        account = self.rest.register(self.username)
        if account is None:
            return False
        self.user_id = account["user_id"]
        if not self.connect("connect"):
            return False
        RUN.clients.add(self)
        return True

    def connect(self, what: str) -> bool:
        host = RUN.hosts[self.node]
        url = "ws" + host.removeprefix("http") + "/ws?token=" + self.rest.token
        t0 = time.perf_counter()
        try:
            ws = websocket.create_connection(
                url,
                timeout=REPLY_TIMEOUT,
                enable_multithread=True,
                skip_utf8_validation=True,
                suppress_origin=True,  # an app, not a browser page: no Origin header
            )
        except (websocket.WebSocketException, OSError) as exc:
            fire(self.env, "WS", what, since(t0), exception=LoadError(repr(exc)))
            if getattr(exc, "status_code", None) == 401:
                self.rest.refresh()  # the access token expired: the next attempt uses a new one
            return False
        ws.settimeout(None)
        fire(self.env, "WS", what, since(t0))
        self.ws = ws
        self.connected = True
        self.greenlets.append(gevent.spawn(self._read, ws))
        return True

    def close(self) -> None:
        self.closing = True
        RUN.clients.discard(self)
        ws = self.ws
        if ws is not None and self.connected:
            with contextlib.suppress(websocket.WebSocketException, OSError):
                ws.send_close()
            gevent.joinall(self.greenlets, timeout=1.0)
        if ws is not None:
            ws.shutdown()
        gevent.killall(self.greenlets, block=False)
        self.rest.close()

    # -- requests ----------------------------------------------------------------------------

    def send(
        self,
        op: str,
        what: str | None,
        params: dict[str, Any],
        result: AsyncResult | None = None,
        out: Outgoing | None = None,
    ) -> bool:
        ws = self.ws
        if ws is None or not self.connected:
            if result is not None:
                result.set((False, {"code": "not_connected"}))
            return False
        rid = next(self.ids)
        self.waiting[rid] = Pending(op, what, time.perf_counter(), result, out)
        try:
            ws.send(json.dumps({"op": op, "id": rid, **params}))
        except (websocket.WebSocketException, OSError):
            self.waiting.pop(rid, None)
            if result is not None:
                result.set((False, {"code": "send_failed"}))
            return False
        return True

    def request(self, op: str, what: str | None, params: dict[str, Any]) -> tuple[bool, Any]:
        """Send and wait for the answer: (True, result) or (False, error)."""
        result = AsyncResult()
        self.send(op, what, params, result=result)
        try:
            return result.get(timeout=REPLY_TIMEOUT)  # type: ignore[no-any-return]
        except gevent.Timeout:
            return False, {"code": "timeout"}

    def join(self, channel: str, kind: str) -> None:
        """Subscribe to a channel now (or at the next reconnect) and keep it across reconnects."""
        if self.closing or channel in self.channels:
            return
        self.channels[channel] = ChannelState(kind)
        self.send("subscribe", "subscribe", {"channel": channel})

    def publish(self, channel: str, kind: str) -> None:
        cmid = f"{self.n}-{next(self.seq)}"
        data = {"t": time.time(), "text": FILLER}
        out = Outgoing(channel, kind, cmid, data, time.time())
        self.unacked[cmid] = out
        self._send_publish(out, "publish")

    def _send_publish(self, out: Outgoing, what: str) -> None:
        params = {"channel": out.channel, "data": out.data, "client_msg_id": out.cmid}
        self.send("publish", what, params, out=out)

    def ready_channels(self, kind: str | None = None) -> list[str]:
        return [
            name
            for name, state in self.channels.items()
            if state.tracker is not None and (kind is None or state.kind == kind)
        ]

    # -- reading -----------------------------------------------------------------------------

    def _read(self, ws: websocket.WebSocket) -> None:
        reason = "closed"
        while True:
            try:
                opcode, data = ws.recv_data()
            except (websocket.WebSocketException, OSError) as exc:
                reason = repr(exc)
                break
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                reason = f"closed by the server with {code}"
                break
            if opcode == websocket.ABNF.OPCODE_TEXT:
                self._on_frame(json.loads(data))
        self._lost(ws, reason)

    def _on_frame(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "event":
            self._on_event(msg)
        elif op in ("reply", "error"):
            self._on_answer(msg)
        elif op == "unsubscribed":
            fire(self.env, "WS", "unsubscribed", 0, exception=LoadError(str(msg)))

    def _on_event(self, msg: dict[str, Any]) -> None:
        state = self.channels.get(msg["channel"])
        if state is None:
            return
        now = time.time()
        offset = msg["offset"]
        if state.tracker is None:
            state.early.append(offset)
        elif not state.tracker.seen(offset, now):
            # The protocol promises each event once: an offset already had is a repeat.
            RUN.duplicates += 1
            error = LoadError(f"offset {offset} of {msg['channel']} pushed twice")
            fire(self.env, "WS", "duplicate", 0, exception=error)
            return
        sent = msg["data"].get("t")
        if isinstance(sent, float | int):
            # Events replayed after a reconnect waited for the client to come back: timed apart.
            replay = self.recovering and offset <= (state.sub_offset or 0)
            fire(self.env, "WS", "replayed" if replay else state.kind, (now - sent) * 1000, 0)
        cmid = msg.get("client_msg_id")
        mine = cmid is not None and msg.get("from") == self.user_id
        if mine and self.echoes.pop(cmid, None) is None and cmid in self.unacked:
            self.early_echoes.add(cmid)

    def _on_answer(self, msg: dict[str, Any]) -> None:
        pending = self.waiting.pop(msg.get("id"), None)  # type: ignore[arg-type]
        if pending is None:
            return
        ms = since(pending.t0)
        ok = msg["op"] == "reply"
        payload = msg.get("result") if ok else msg
        if ok and pending.op == "subscribe":
            self._on_subscribed(payload)
        elif pending.op == "publish" and pending.out is not None:
            self._on_published(pending.out, ok, payload)
        if pending.what is not None:
            error = None if ok else LoadError(f"{payload.get('code')}: {payload.get('message')}")
            fire(self.env, "WS", pending.what, ms, 0, error)
        if pending.result is not None:
            pending.result.set((ok, payload))

    def _on_subscribed(self, result: dict[str, Any]) -> None:
        state = self.channels.get(result["channel"])
        if state is None:
            return
        offset = result["offset"]
        state.sub_offset = offset
        state.epoch = result.get("epoch") or state.epoch
        if state.tracker is None:
            state.tracker = OffsetTracker(offset)
            for early in state.early:
                state.tracker.seen(early, time.time())
            state.early.clear()

    def _on_published(self, out: Outgoing, ok: bool, result: dict[str, Any]) -> None:
        self.unacked.pop(out.cmid, None)
        early = out.cmid in self.early_echoes
        self.early_echoes.discard(out.cmid)
        if not ok or early:
            return
        state = self.channels.get(out.channel)
        if state is None or state.sub_offset is None or result["offset"] <= state.sub_offset:
            return  # stored before this socket subscribed: the backfill accounts for it
        self.echoes[out.cmid] = (out.sent, out.kind, out.channel, result["offset"])

    # -- checks ------------------------------------------------------------------------------

    def check(self) -> None:
        """Report own messages that never came back and pushes that were lost."""
        if not self.connected or self.recovering:
            return
        now = time.time()
        for cmid, (sent, kind, channel, offset) in list(self.echoes.items()):
            if now - sent > ECHO_TIMEOUT:
                del self.echoes[cmid]
                error = LoadError(f"own message {offset} in {channel} not back in {ECHO_TIMEOUT} s")
                fire(self.env, "WS", kind, (now - sent) * 1000, exception=error)
        for channel, state in self.channels.items():
            if state.tracker is not None:
                self._report_missed(channel, state.tracker.stale(now, GAP_GRACE), "live")

    def _report_missed(self, channel: str, missing: list[int], how: str) -> None:
        if not missing:
            return
        RUN.missed += len(missing)
        if self.storm_generation:
            RUN.storm.missed += len(missing)
        shown = ", ".join(map(str, missing[:5]))
        error = LoadError(f"{len(missing)} offsets of {channel} never arrived ({how}): {shown}")
        fire(self.env, "WS", "missed", 0, exception=error)

    # -- losing the socket and coming back ---------------------------------------------------

    def drop(self, generation: int) -> None:
        """The storm: cut this socket now (no close frame); the reader reconnects it."""
        self.storm_generation = generation
        ws = self.ws
        if ws is not None and self.connected:
            ws.abort()

    def _lost(self, ws: websocket.WebSocket, reason: str) -> None:
        if ws is not self.ws:
            return
        self.connected = False
        for pending in self.waiting.values():
            if pending.result is not None:
                pending.result.set((False, {"code": "disconnected"}))
        self.waiting.clear()
        ws.shutdown()
        if self.closing:
            return
        storm = self.storm_generation > self.storm_done
        if not storm:
            fire(self.env, "WS", "disconnect", 0, exception=LoadError(reason))
        self.recovering = True
        self.greenlets = [g for g in self.greenlets if not g.dead]
        self.greenlets.append(gevent.spawn(self._reconnect, storm))

    def _reconnect(self, storm: bool) -> None:
        gevent.sleep(random.uniform(0.0, STORM_WINDOW) if storm else random.uniform(0.5, 2.0))
        # A load balancer may send the client anywhere: take the next node.
        self.node = (self.node + 1) % len(RUN.hosts)
        for attempt in range(5):
            if self.closing:
                return
            if self.connect("reconnect"):
                break
            gevent.sleep(1.0 + attempt)
        else:
            RUN.storm.reconnect_failures += 1
            return
        ok = self._resubscribe()
        # Resend what was never acknowledged: the same client_msg_id makes it safe.
        for out in list(self.unacked.values()):
            self._send_publish(out, "publish-retry")
        self.recovering = False
        if ok and storm and self.storm_generation == RUN.storm.generation:
            self.storm_done = self.storm_generation
            elapsed = time.time() - RUN.storm.dropped_at
            RUN.storm.back_after.append(elapsed)
            fire(self.env, "WS", "storm-reconnect", elapsed * 1000)

    def _resubscribe(self) -> bool:
        """Subscribe again to every channel, recover what was missed, and check it all came.

        With ``since`` (the default) the gateway replays the missed events as pushes right after
        the reply; when it cannot (``recovered: false``), or with LOADTEST_RECOVERY=history, the
        client reads ``history`` back to the last offset it saw. Either way any offset up to the
        reply's ``offset`` that never arrived counts as missed.
        """
        results = {}
        for channel, state in list(self.channels.items()):
            params: dict[str, Any] = {"channel": channel}
            if RUN.recovery == "since" and state.tracker is not None:
                params["since"] = {"offset": state.tracker.mark, "epoch": state.epoch}
            result = AsyncResult()
            self.send("subscribe", "subscribe", params, result=result)
            results[channel] = result
        ok = True
        for channel, result in results.items():
            try:
                answered, reply = result.get(timeout=REPLY_TIMEOUT)
            except gevent.Timeout:
                answered, reply = False, None
            if not answered:
                ok = False
                continue
            state = self.channels[channel]
            self._forget_echoes(channel, state.sub_offset)
            if reply.get("recovered") is True:
                self._await_replay(channel, state, int(reply.get("missed", 0)))
            else:
                if "recovered" in reply:
                    RUN.storm.not_recovered[reply.get("reason", "?")] += 1
                if not self._backfill(channel, state):
                    ok = False
        return ok

    def _forget_echoes(self, channel: str, upto: int | None) -> None:
        """Own messages stored while away come back by replay or history, which are checked."""
        if upto is None:
            return
        for cmid, (_sent, _kind, ch, offset) in list(self.echoes.items()):
            if ch == channel and offset <= upto:
                del self.echoes[cmid]

    def _await_replay(self, channel: str, state: ChannelState, missed: int) -> None:
        """Wait for the replayed events (they follow the reply) up to the reply's offset."""
        tracker, upto = state.tracker, state.sub_offset
        if tracker is None or upto is None:
            return
        RUN.storm.replayed += missed
        deadline = time.monotonic() + REPLY_TIMEOUT
        while tracker.mark < upto and time.monotonic() < deadline and self.connected:
            gevent.sleep(0.05)
        self._report_missed(channel, tracker.backfill([], upto), "replay after reconnect")

    def _backfill(self, channel: str, state: ChannelState) -> bool:
        """Read history back to the last offset seen; count what is still missing."""
        tracker, upto = state.tracker, state.sub_offset
        if tracker is None or upto is None or upto <= tracker.mark:
            return True
        floor = tracker.mark
        offsets: list[int] = []
        before = None
        for _page in range(MAX_BACKFILL_PAGES):
            params: dict[str, Any] = {"channel": channel, "limit": 100}
            if before is not None:
                params["before"] = before
            ok, result = self.request("history", "backfill", params)
            if not ok:
                return False
            page = [m["offset"] for m in result["messages"]]
            offsets.extend(page)
            before = result["next_before"]
            if not page or min(page) <= floor + 1 or before is None:
                break
        RUN.storm.backfilled += len([o for o in set(offsets) if floor < o <= upto])
        self._report_missed(channel, tracker.backfill(offsets, upto), "after reconnect")
        return True


class WsChatUser(User):
    """Chats over a WebSocket: a DM with one peer, a group of four, one busy room."""

    weight = 6
    wait_time = between(1, 3)
    abstract = False
    channel_weights: ClassVar[dict[str, int]] = {"dm": 3, "group": 2, "room": 1}

    def on_start(self) -> None:
        self.client = WsClient(self, next(RUN.counter))
        if not self.client.start():
            self.client.close()
            raise StopUser  # the failure is already reported
        self._enroll()

    def _enroll(self) -> None:
        client = self.client
        k = len(RUN.chat)
        RUN.chat.append(client)
        if k % 2 == 1:
            peer = RUN.chat[k - 1]
            channel = dm_channel(client.user_id, peer.user_id)
            client.join(channel, "dm")
            peer.join(channel, "dm")
        if k % GROUP_SIZE == GROUP_SIZE - 1:
            members = RUN.chat[k - GROUP_SIZE + 1 : k]
            body = {"name": f"group {k // GROUP_SIZE}", "members": [m.user_id for m in members]}
            group = client.rest.call("POST", "/v1/groups", "group-create", body=body, expect=(201,))
            if group is not None:
                for member in (client, *members):
                    member.join(group["channel"], "group")
        client.join(f"room:lt-{k % RUN.rooms}", "room")

    @task(10)
    def chat(self) -> None:
        self.client.check()
        if not self.client.connected or self.client.recovering:
            return
        kinds = [k for k in self.channel_weights if self.client.ready_channels(k)]
        if not kinds:
            return
        kind = random.choices(kinds, [self.channel_weights[k] for k in kinds])[0]
        self.client.publish(random.choice(self.client.ready_channels(kind)), kind)

    @task(1)
    def read_history(self) -> None:
        if not self.client.connected or self.client.recovering:
            return
        channels = self.client.ready_channels()
        if channels:
            self.client.request("history", "history", {"channel": random.choice(channels)})

    def on_stop(self) -> None:
        if hasattr(self, "client"):
            self.client.close()


class VideoViewer(User):
    """Watches a live video: subscribed to ``video:{id}``, idle (no client may publish there)."""

    weight = 2
    wait_time = constant(5)

    def on_start(self) -> None:
        self.client = WsClient(self, next(RUN.counter))
        if not self.client.start():
            self.client.close()
            raise StopUser
        self.client.join(f"video:lt-{self.client.n % VIDEOS}", "video")

    @task
    def watch(self) -> None:
        self.client.check()

    def on_stop(self) -> None:
        if hasattr(self, "client"):
            self.client.close()


class RestUser(User):
    """A client without WebSockets: publishes and reads over REST, long-polls for events."""

    weight = 2
    wait_time = between(1, 3)

    def on_start(self) -> None:
        n = next(RUN.counter)
        host = RUN.hosts[n % len(RUN.hosts)]
        self.rest = Rest(self.environment, host)
        self.poll_rest = Rest(self.environment, host)
        self.channel = f"room:lt-{n % RUN.rooms}"
        self.n = n
        self.seq = itertools.count(1)
        account = self.rest.register(RUN.username(n))
        if account is None:
            raise StopUser
        self.poll_rest.token = self.rest.token
        self.poller = gevent.spawn(self._poll)

    def _poll(self) -> None:
        path = f"/v1/channels/{self.channel}/events"
        tracker: OffsetTracker | None = None
        next_since: int | None = None
        while True:
            params: dict[str, Any] = {"timeout": POLL_TIMEOUT}
            if next_since is not None:
                params["since"] = next_since
            answer = self.poll_rest.call(
                "GET", path, "events", params=params, timeout=POLL_TIMEOUT + 10, report=False
            )
            if answer is None:
                gevent.sleep(1.0)
                continue
            now = time.time()
            for event in answer["events"]:
                if tracker is None:
                    tracker = OffsetTracker(event["offset"] - 1)
                if not tracker.seen(event["offset"], now):
                    RUN.duplicates += 1
                    error = LoadError(f"long poll gave offset {event['offset']} twice")
                    fire(self.environment, "POLL", "duplicate", 0, exception=error)
                    continue
                sent = event["data"].get("t")
                if isinstance(sent, float | int):
                    fire(self.environment, "POLL", "room", (now - sent) * 1000)
            next_since = answer["next_since"]
            if tracker is None:
                tracker = OffsetTracker(next_since)
            missing = tracker.backfill([], next_since)
            if missing:
                RUN.missed += len(missing)
                error = LoadError(f"long poll skipped {len(missing)} offsets of {self.channel}")
                fire(self.environment, "POLL", "missed", 0, exception=error)

    @task(3)
    def publish(self) -> None:
        body = {
            "data": {"t": time.time(), "text": FILLER},
            "client_msg_id": f"r{self.n}-{next(self.seq)}",
        }
        self.rest.call("POST", f"/v1/channels/{self.channel}/messages", "publish", body=body)

    @task(1)
    def read_history(self) -> None:
        path = f"/v1/channels/{self.channel}/messages"
        self.rest.call("GET", path, "history", params={"limit": 20})

    def on_stop(self) -> None:
        if hasattr(self, "poller"):
            self.poller.kill(block=False)
            self.rest.close()
            self.poll_rest.close()
