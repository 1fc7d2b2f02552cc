"""Rate limits: token buckets per rule and subject, shared by every node through Redis.

A rule is ``capacity/period``: a bucket holds at most ``capacity`` tokens and refills at
``capacity / period`` tokens per second; each request takes one. So ``publish=200/40s`` lets a
user send 200 messages at once (a phone flushing its outbox) and 5 a second after that.

The subject is what the rule counts: a user id for ops and signed-in requests, the client's
address for sign-in endpoints and REST as a whole, a username for login attempts on one
account, an email address for the requests that mail it (``mail_address``: password resets and
address changes naming it, so nobody can flood one mailbox). :data:`SPECIAL_RULES` names the rules that are not ops; every other rule name is an
op (``publish``, ``subscribe``, ``like``, ...) counted per user, on the WebSocket and REST alike,
because both reach the op through :class:`handlers.base.Operation`.

With Redis (``MOOSIC_REDIS_URL``) a bucket is one small hash, updated by one Lua script that
reads Redis's own clock, so every node sees the same bucket and node clocks do not matter. The
script runs on the node's one Redis client (:class:`storage.redis.client.RedisClient`, no
extra connection). When Redis does not
answer, the node falls back to its own in-process buckets (counted in
``moosic_rate_limit_fallbacks_total``): limits then hold per node instead of across nodes.
A frozen Redis costs at most :data:`REDIS_TIMEOUT` per check only until the client's circuit
breaker opens (a few checks); while it is open every check goes straight to the local buckets
(fail open, with this node's limits), and the breaker's probe finds Redis again.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from gateway.metrics import Metrics
from handlers.errors import RateLimitedError
from storage.errors import Unavailable
from storage.redis.client import RedisClient, lua
from storage.redis.resp import ConnectionLost, RespError

log = logging.getLogger(__name__)

REDIS_TIMEOUT = 1.0
"""Seconds to wait for Redis before using the node's own buckets for that request."""
LOCAL_BUCKETS = 200_000
"""In-process buckets remembered (least recently used forgotten first): bounded memory."""


@dataclass(frozen=True, slots=True)
class Rule:
    """A bucket of ``capacity`` tokens, refilled completely in ``period`` seconds."""

    capacity: int
    period: float

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self.capacity / self.period

    def __str__(self) -> str:
        period = self.period
        for unit, seconds in (("h", 3600), ("m", 60)):
            if period >= seconds and period % seconds == 0:
                return f"{self.capacity}/{int(period // seconds)}{unit}"
        return f"{self.capacity}/{period:g}s"


SPECIAL_RULES: dict[str, str] = {
    "login": "client address",
    "login_account": "username",
    "register": "client address",
    "refresh": "client address",
    "logout": "client address",
    "rest": "client address",
    "rest_user": "user",
    "connect": "user",
    "connect_ip": "client address",
    "password_reset": "client address",
    "password_reset_confirm": "client address",
    "email_change": "user",
    "email_verify": "client address",
    "mail_address": "email address",
}
"""Rules that are not ops, with what each counts; any other rule is an op, counted per user."""

DEFAULT_RULES: dict[str, Rule] = {
    "login": Rule(30, 300),
    "login_account": Rule(10, 300),
    "register": Rule(20, 3600),
    "refresh": Rule(60, 60),
    "logout": Rule(60, 60),
    "rest": Rule(3000, 60),
    "rest_user": Rule(600, 60),
    "connect": Rule(60, 60),
    "password_reset": Rule(20, 3600),
    "password_reset_confirm": Rule(30, 3600),
    "email_change": Rule(10, 3600),
    "email_verify": Rule(30, 3600),
    "mail_address": Rule(5, 3600),
    "publish": Rule(200, 40),
    "subscribe": Rule(300, 60),
    "watch_presence": Rule(60, 60),
    "create_group": Rule(30, 3600),
    "add_member": Rule(300, 60),
    "auth": Rule(30, 60),
    "like": Rule(120, 60),
    "unlike": Rule(120, 60),
    "comment": Rule(30, 60),
    "share": Rule(60, 60),
    "follow": Rule(200, 3600),
    "unfollow": Rule(200, 3600),
    "block": Rule(100, 3600),
    "reshare": Rule(30, 60),
    "track": Rule(120, 60),
    "set_notification_settings": Rule(60, 60),
    "mute_conversation": Rule(120, 60),
    "unmute_conversation": Rule(120, 60),
}
"""The limits in force unless ``MOOSIC_RATE_LIMITS`` says otherwise (see docs/security.md)."""

_ENTRY = re.compile(r"^([a-z][a-z0-9_]{0,39})=(?:(off)|(\d{1,9})/(\d+(?:\.\d+)?)([smh]?))$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The rules in force, by name (immutable, so settings stay hashable)."""

    rules: tuple[tuple[str, Rule], ...] = tuple(sorted(DEFAULT_RULES.items()))

    def __iter__(self) -> Iterator[tuple[str, Rule]]:
        return iter(self.rules)

    def as_dict(self) -> dict[str, Rule]:
        return dict(self.rules)

    @classmethod
    def of(cls, rules: Mapping[str, Rule]) -> RateLimits:
        return cls(tuple(sorted(rules.items())))

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        known: Callable[[str], bool] | None = None,
        base: RateLimits | None = None,
    ) -> RateLimits:
        """Apply ``name=N/PERIOD`` and ``name=off`` entries (comma-separated) to ``base``.

        ``off`` alone turns every limit off. ``PERIOD`` is seconds, or a number with ``s``,
        ``m`` or ``h``. ``known`` rejects rule names that match nothing (typos).
        """
        rules = (base or cls()).as_dict()
        text = text.strip()
        if text == "off":
            return cls(())
        problems: list[str] = []
        for raw in text.split(","):
            entry = raw.strip()
            if not entry:
                continue
            match = _ENTRY.match(entry)
            if match is None:
                problems.append(
                    f"{entry!r} is not name=N/PERIOD (e.g. publish=200/40s) or name=off"
                )
                continue
            name, off, count, period, unit = match.groups()
            if known is not None and not known(name):
                problems.append(f"{name!r} is neither an op nor one of {', '.join(SPECIAL_RULES)}")
                continue
            if off:
                rules.pop(name, None)
                continue
            seconds = float(period) * _UNITS[unit]
            if int(count) < 1 or not 0.001 <= seconds <= 7 * 86400:
                problems.append(f"{entry!r}: N must be at least 1 and PERIOD 1ms to 7 days")
                continue
            rules[name] = Rule(int(count), seconds)
        if problems:
            raise ValueError("; ".join(problems))
        return cls.of(rules)


class LocalBuckets:
    """Token buckets in this process; at most ``size`` of them (least recently used dropped).

    Dropping a bucket refills it, so ``size`` must exceed the subjects active within a period:
    the default holds 200,000 (about 200 bytes each).
    """

    def __init__(
        self, *, size: int = LOCAL_BUCKETS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()
        self._size = size
        self._clock = clock

    def take(self, name: str, rule: Rule, subject: str) -> float:
        """Take one token; return 0 when there was one, else the seconds until there is."""
        now = self._clock()
        key = (name, subject)
        found = self._buckets.get(key)
        if found is None:
            tokens = float(rule.capacity)
        else:
            tokens, stamp = found
            tokens = min(float(rule.capacity), tokens + max(0.0, now - stamp) * rule.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / rule.rate
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        if len(self._buckets) > self._size:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


BUCKET_SCRIPT = lua("ratelimit_take_token")
"""One bucket, atomically: refill by Redis's clock, take a token, answer the wait in ms (0 = ok).
A bucket left alone expires once it would be full again, so idle subjects cost nothing."""


class Limiter:
    """The rules in force and their buckets (:class:`handlers.ports.RateLimiter`)."""

    def __init__(
        self,
        limits: RateLimits,
        metrics: Metrics,
        *,
        redis: RedisClient | None = None,
        prefix: str = "moosic:",
        local: LocalBuckets | None = None,
    ) -> None:
        self._rules = limits.as_dict()
        self.rules = frozenset(self._rules)
        self._metrics = metrics
        self._redis = redis
        self._prefix = prefix.encode() + b"rl:"
        self._local = local or LocalBuckets()
        self._fallback_logged = False

    def rule(self, name: str) -> Rule | None:
        return self._rules.get(name)

    async def check(self, rule: str, subject: str) -> None:
        """Take a token from ``subject``'s bucket of ``rule``, or raise ``rate_limited``."""
        wait = await self.acquire(rule, subject)
        if wait > 0:
            self._metrics.rate_limited += 1
            raise RateLimitedError(rule, wait)

    async def acquire(self, name: str, subject: str) -> float:
        """Take a token; return 0 when allowed, else the seconds until a token is there."""
        rule = self._rules.get(name)
        if rule is None:
            return 0.0
        if self._redis is None:
            return self._local.take(name, rule, subject)
        key = b"%s%s:%s" % (self._prefix, name.encode(), subject.encode())
        args = [repr(rule.rate).encode(), str(rule.capacity).encode()]
        try:
            wait_ms = await self._redis.script(BUCKET_SCRIPT, [key], args, timeout=REDIS_TIMEOUT)
        except (OSError, TimeoutError, ConnectionLost, RespError, Unavailable) as exc:
            self._metrics.rate_limit_fallbacks += 1
            if not self._fallback_logged:
                log.warning(
                    "rate limits: Redis did not answer (%s); using this node's buckets", exc
                )
                self._fallback_logged = True
            return self._local.take(name, rule, subject)
        self._fallback_logged = False
        return int(wait_ms) / 1000.0
