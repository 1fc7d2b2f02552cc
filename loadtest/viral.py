"""Locust users for a viral post: one author, thousands of followers, ready to add to the locustfile.

Self-contained (locust, websocket-client, requests; nothing from ``users.py``), like
``social.py``, so it can be wired into the surge shape without touching the chat users:

```python
# locustfile.py
from viral import FeedFollower, ViralAuthor, configure as configure_viral, report as viral_report

configure_viral(CONFIG.hosts, lambda: PLAN.phase_name(RUN.clock()))   # in on_init
__all__ = [..., "ViralAuthor", "FeedFollower"]
```

and in ``run.sh`` start the nodes with ``MOOSIC_VIDEO_READY_ON_CREATE=1`` (the author posts with
``POST /v1/videos``; without media that is the only way to a ready video). The default rate
limits are enough (a follower follows once; the feed read counts against ``rest_user`` only).

| user | weight | does | reported as |
| --- | --- | --- | --- |
| ``ViralAuthor`` | exactly one (``fixed_count``) | registers the author, then posts a video every ``POST_EVERY`` seconds | ``REST post video``: ``POST /v1/videos`` → 201 (the fan-out runs after it) |
| ``FeedFollower`` | 20 | registers, follows the author (``PUT /v1/users/{id}/follow``), opens a socket to node n mod N subscribed to its ``user:`` channel; reads its feed every 5 to 15 s | ``WS feed push``: from the author's POST (same locust process) to the push; ``REST feed``: ``GET /v1/feed``; a failure when a post's push arrives twice, or a feed page lists a video twice |

The gateway's promise under test: a post reaches every online follower within moments, once,
however many follow (below ``MOOSIC_FEED_FANOUT_THRESHOLD`` it is written into each feed, above
it merged in when read: set the threshold below the follower count to load the read path), and
the author's request is answered at once. At the end, :func:`report` says how many posts each
follower saw pushed against how many were made.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from typing import Any

import gevent
import requests
from gevent.event import AsyncResult
from locust import User, between, constant, task
from locust.env import Environment
from locust.exception import StopUser
from wsclient import PASSWORD, REPLY_TIMEOUT, LoadError, Socket

POST_EVERY = 10.0
"""Seconds between two posts of the author."""


class _Viral:
    """What the users of one locust process share: hosts, the phase, the author, the posts."""

    def __init__(self) -> None:
        self.hosts: tuple[str, ...] = ("http://127.0.0.1:8080",)
        self.phase: Callable[[], str] = lambda: "viral"
        self.counter = itertools.count()
        self.author: AsyncResult = AsyncResult()
        """The author's user id, once registered."""
        self.posted: dict[str, float] = {}
        """Video id → monotonic time its POST was sent (posts made by this process)."""
        self.pushes: dict[str, int] = {}
        """Video id → feed pushes received for it (all followers of this process)."""
        self.followers = 0

    def name(self, what: str) -> str:
        return f"{self.phase()} {what}"


VIRAL = _Viral()


def configure(hosts: tuple[str, ...], phase: Callable[[], str] | None = None) -> None:
    """Point the users at the cluster; ``phase`` names the shape's phase for the reports."""
    VIRAL.hosts = hosts
    if phase is not None:
        VIRAL.phase = phase


def _fire(env: Environment, kind: str, what: str, ms: float, exc: Exception | None = None) -> None:
    env.events.request.fire(
        request_type=kind,
        name=VIRAL.name(what),
        response_time=ms,
        response_length=0,
        exception=exc,
        context={},
    )


def _register(base: str, username: str) -> dict[str, Any] | None:
    body = {"username": username, "password": PASSWORD}
    for path in ("/v1/auth/register", "/v1/auth/login"):
        try:
            answer = requests.post(base + path, json=body, timeout=REPLY_TIMEOUT)
        except requests.RequestException:
            return None
        if answer.status_code in (200, 201):
            account: dict[str, Any] = answer.json()
            return account
    return None


def _headers(account: dict[str, Any]) -> dict[str, str]:
    return {"authorization": f"Bearer {account['access_token']}"}


class ViralAuthor(User):
    """The one account everybody follows; posts a video every ``POST_EVERY`` seconds."""

    fixed_count = 1
    wait_time = constant(POST_EVERY)

    def on_start(self) -> None:
        self.base = VIRAL.hosts[0]
        account = _register(self.base, f"viral_{random.randrange(10**9)}")
        if account is None:
            VIRAL.author.set_exception(LoadError("the author could not register"))
            raise StopUser
        self.account = account
        VIRAL.author.set(account["user_id"])
        gevent.sleep(POST_EVERY)  # let followers follow and connect first

    @task
    def post(self) -> None:
        t0 = time.perf_counter()
        sent = time.monotonic()
        try:
            answer = requests.post(
                self.base + "/v1/videos",
                json={"title": "viral"},
                headers=_headers(self.account),
                timeout=REPLY_TIMEOUT,
            )
        except requests.RequestException as exc:
            _fire(self.environment, "REST", "post video", 0.0, LoadError(repr(exc)))
            return
        ms = (time.perf_counter() - t0) * 1000
        if answer.status_code != 201:  # MOOSIC_VIDEO_READY_ON_CREATE is off on the cluster
            _fire(self.environment, "REST", "post video", ms, LoadError(answer.text[:200]))
            return
        VIRAL.posted[answer.json()["video_id"]] = sent
        _fire(self.environment, "REST", "post video", ms)


class FeedFollower(User):
    """Follows the author, listens on its ``user:`` channel, reads its feed now and then."""

    weight = 20
    wait_time = between(5, 15)

    def on_start(self) -> None:
        n = next(VIRAL.counter)
        self.base = VIRAL.hosts[n % len(VIRAL.hosts)]
        account = _register(self.base, f"vf{n}_{random.randrange(10**6)}"[:32])
        try:
            author = VIRAL.author.get(timeout=60)
        except (LoadError, gevent.Timeout):
            raise StopUser from None
        if account is None:
            raise StopUser
        self.account = account
        self.seen: set[str] = set()
        t0 = time.perf_counter()
        answer = requests.put(
            f"{self.base}/v1/users/{author}/follow",
            headers=_headers(account),
            timeout=REPLY_TIMEOUT,
        )
        ms = (time.perf_counter() - t0) * 1000
        failure = None if answer.status_code == 200 else LoadError(answer.text[:200])
        _fire(self.environment, "REST", "follow", ms, failure)
        if failure is not None:
            raise StopUser
        self.socket = Socket(self.base, account["access_token"], self._push)
        reply = self.socket.call("subscribe", channel=f"user:{account['user_id']}")
        if reply["op"] != "reply":
            raise StopUser
        VIRAL.followers += 1

    def _push(self, message: dict[str, Any]) -> None:
        if message.get("op") != "feed":
            return
        video_id = message["video"]["video_id"]
        VIRAL.pushes[video_id] = VIRAL.pushes.get(video_id, 0) + 1
        failure = LoadError("a second push of one post") if video_id in self.seen else None
        self.seen.add(video_id)
        sent = VIRAL.posted.get(video_id)
        ms = (time.monotonic() - sent) * 1000 if sent is not None else 0.0
        _fire(self.environment, "WS", "feed push", ms, failure)

    @task
    def read_feed(self) -> None:
        t0 = time.perf_counter()
        try:
            answer = requests.get(
                self.base + "/v1/feed?limit=20",
                headers=_headers(self.account),
                timeout=REPLY_TIMEOUT,
            )
        except requests.RequestException as exc:
            _fire(self.environment, "REST", "feed", 0.0, LoadError(repr(exc)))
            return
        ms = (time.perf_counter() - t0) * 1000
        failure = None
        if answer.status_code != 200:
            failure = LoadError(answer.text[:200])
        else:
            videos = [item["video"]["video_id"] for item in answer.json()["items"]]
            if len(videos) != len(set(videos)):
                failure = LoadError("a feed page lists a video twice")
        _fire(self.environment, "REST", "feed", ms, failure)

    def on_stop(self) -> None:
        if hasattr(self, "socket"):
            self.socket.close()


def report() -> dict[str, Any]:
    """Posts made and pushes received in this locust process (call at test stop)."""
    return {
        "posts": len(VIRAL.posted),
        "followers": VIRAL.followers,
        "pushes_per_post": {video: VIRAL.pushes.get(video, 0) for video in VIRAL.posted},
    }
