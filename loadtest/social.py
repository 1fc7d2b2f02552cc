"""Locust users for the like flood on one viral video, ready to be added to the locustfile.

Self-contained (locust, websocket-client, requests; nothing from ``users.py``), so it can be
wired into the surge shape without touching the chat users:

```python
# locustfile.py
from social import CountsWatcher, VideoFan, configure as configure_social

configure_social(CONFIG.hosts, lambda: PLAN.phase_name(RUN.clock()))   # in on_init
__all__ = [..., "VideoFan", "CountsWatcher"]
```

and in ``run.sh`` start the nodes with ``MOOSIC_VIDEO_READY_ON_CREATE=1`` (the first fan creates
the video with ``POST /v1/videos``; without media that is the only way to a ready video) and
``like=off,unlike=off`` added to ``MOOSIC_RATE_LIMITS`` (a fan likes faster than a person).

| user | weight | does | reported as |
| --- | --- | --- | --- |
| ``VideoFan`` | 6 | registers, opens a socket to node n mod N, then likes the one video again and again (every 0.05 to 0.2 s); one time in ten it unlikes instead, one in fifty it comments | ``WS like`` / ``WS unlike`` / ``WS comment``: request → reply |
| ``CountsWatcher`` | 1 | subscribes to ``video:{id}`` and reads ``counts`` pushes | ``WS counts``: the time since its previous push (≈ the window); a failure when one watcher gets more than one push per window over 5 s, or when a push goes back in ``version`` |

The gateway's promise under test: however fast the fans like, a watcher gets at most one
``counts`` push per ``MOOSIC_COUNTS_PUSH_WINDOW`` (250 ms) with absolute totals; and the likes
are answered in milliseconds (one conditional write each; duplicates cost no Redis work). At
the end, :func:`report` compares the last push with ``GET /v1/videos/{id}``.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
import requests
import websocket
from gevent.event import AsyncResult
from locust import User, between, constant, task
from locust.env import Environment
from locust.exception import StopUser
from wsclient import PASSWORD, REPLY_TIMEOUT, LoadError, Socket

WINDOW = 0.25
"""The gateway's ``MOOSIC_COUNTS_PUSH_WINDOW`` (its default)."""
BOUND_SPAN = 5.0
"""Seconds over which a watcher's pushes are checked against one per window (+1)."""


class _Flood:
    """What the users of one locust process share: hosts, the phase name, the video."""

    def __init__(self) -> None:
        self.hosts: tuple[str, ...] = ("http://127.0.0.1:8080",)
        self.phase: Callable[[], str] = lambda: "flood"
        self.counter = itertools.count()
        self.video: AsyncResult = AsyncResult()
        self.creating = False
        self.last_push: dict[str, Any] | None = None
        self.token: str | None = None
        """A signed-in user's token, for :func:`report`."""

    def name(self, what: str) -> str:
        return f"{self.phase()} {what}"


FLOOD = _Flood()


def configure(hosts: tuple[str, ...], phase: Callable[[], str] | None = None) -> None:
    """Point the users at the cluster; ``phase`` names the shape's phase for the reports."""
    FLOOD.hosts = hosts
    if phase is not None:
        FLOOD.phase = phase


def _fire(env: Environment, what: str, ms: float, exc: Exception | None = None) -> None:
    env.events.request.fire(
        request_type="WS",
        name=FLOOD.name(what),
        response_time=ms,
        response_length=0,
        exception=exc,
        context={},
    )


def _register(base: str, username: str) -> str | None:
    body = {"username": username, "password": PASSWORD}
    for path in ("/v1/auth/register", "/v1/auth/login"):
        try:
            answer = requests.post(base + path, json=body, timeout=REPLY_TIMEOUT)
        except requests.RequestException:
            return None
        if answer.status_code in (200, 201):
            FLOOD.token = str(answer.json()["access_token"])
            return FLOOD.token
    return None


def _video_id(base: str, token: str) -> str | None:
    """The flood's video: the first user to ask creates it, everyone else waits for it."""
    if not FLOOD.creating:
        FLOOD.creating = True
        try:
            answer = requests.post(
                base + "/v1/videos",
                json={"title": "viral"},
                headers={"authorization": f"Bearer {token}"},
                timeout=REPLY_TIMEOUT,
            )
        except requests.RequestException as exc:
            FLOOD.video.set_exception(LoadError(repr(exc)))
        else:
            if answer.status_code == 201:
                FLOOD.video.set(answer.json()["video_id"])
            else:  # MOOSIC_VIDEO_READY_ON_CREATE is off on the cluster
                FLOOD.video.set_exception(LoadError(f"POST /v1/videos: {answer.text[:200]}"))
    try:
        return str(FLOOD.video.get(timeout=30))
    except (LoadError, gevent.Timeout):
        return None


class VideoFan(User):
    """Likes one video as fast as a thumb can tap, from many accounts at once."""

    weight = 6
    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        n = next(FLOOD.counter)
        base = FLOOD.hosts[n % len(FLOOD.hosts)]
        token = _register(base, f"fan{n}_{random.randrange(10**6)}"[:32])
        video = _video_id(base, token) if token else None
        if token is None or video is None:
            raise StopUser
        self.video = video
        self.socket = Socket(base, token, lambda _push: None)

    @task
    def tap(self) -> None:
        roll = random.random()
        op, fields = "like", {"video_id": self.video}
        if roll < 0.02:
            op, fields = "comment", {**fields, "text": "🔥"}
        elif roll < 0.12:
            op = "unlike"
        t0 = time.perf_counter()
        try:
            answer = self.socket.call(op, **fields)
        except (LoadError, gevent.Timeout, websocket.WebSocketException, OSError) as exc:
            _fire(self.environment, op, (time.perf_counter() - t0) * 1000, LoadError(repr(exc)))
            return
        ms = (time.perf_counter() - t0) * 1000
        failure = None if answer["op"] == "reply" else LoadError(answer.get("code", "error"))
        _fire(self.environment, op, ms, failure)

    def on_stop(self) -> None:
        if hasattr(self, "socket"):
            self.socket.close()


class CountsWatcher(User):
    """Watches the video: counts its ``counts`` pushes and checks the coalescing bound."""

    weight = 1
    wait_time = constant(1)

    def on_start(self) -> None:
        n = next(FLOOD.counter)
        base = FLOOD.hosts[n % len(FLOOD.hosts)]
        token = _register(base, f"watch{n}_{random.randrange(10**6)}"[:32])
        video = _video_id(base, token) if token else None
        if token is None or video is None:
            raise StopUser
        self.arrivals: deque[float] = deque()
        self.last_version = -1
        self.socket = Socket(base, token, self._push)
        answer = self.socket.call("subscribe", channel=f"video:{video}")
        if answer["op"] != "reply":
            raise StopUser

    def _push(self, message: dict[str, Any]) -> None:
        if message.get("op") != "counts":
            return
        now = time.monotonic()
        since = (now - self.arrivals[-1]) * 1000 if self.arrivals else 0.0
        self.arrivals.append(now)
        while self.arrivals and self.arrivals[0] < now - BOUND_SPAN:
            self.arrivals.popleft()
        failure = None
        if len(self.arrivals) > BOUND_SPAN / WINDOW + 1:
            failure = LoadError(f"{len(self.arrivals)} counts pushes within {BOUND_SPAN:g} s")
        elif message["version"] < self.last_version:
            failure = LoadError("a counts push went back in version")
        self.last_version = max(self.last_version, message["version"])
        FLOOD.last_push = message
        _fire(self.environment, "counts", since, failure)

    @task
    def watch(self) -> None:
        """Nothing to send: the reader greenlet does the work."""

    def on_stop(self) -> None:
        if hasattr(self, "socket"):
            self.socket.close()


def report() -> dict[str, Any]:
    """The last push seen against the video's REST read (call at test stop)."""
    if not FLOOD.video.ready() or not FLOOD.video.successful():
        return {"video": None}
    video_id = FLOOD.video.get()
    headers = {"authorization": f"Bearer {FLOOD.token}"} if FLOOD.token else {}
    try:
        answer = requests.get(
            FLOOD.hosts[0] + f"/v1/videos/{video_id}", headers=headers, timeout=REPLY_TIMEOUT
        )
        stored = answer.json() if answer.status_code == 200 else None
    except requests.RequestException:
        stored = None
    return {"video": video_id, "last_push": FLOOD.last_push, "read": stored}
