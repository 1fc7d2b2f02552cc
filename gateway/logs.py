"""Structured logs (issue 17, first part): JSON lines, ids carried by contextvars, scrubbing, sampling.

``configure`` is called by ``gateway.__main__`` with ``MOOSIC_LOG_FORMAT`` (text or json). The
request id is set by ``gateway.http.request_id``; ``conn_id`` by ``gateway.ws.connection``
for the ops a socket runs (their task's context), and passed as ``extra`` on the lines its own
callbacks log (those run in no context of the socket's).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
from collections.abc import Callable

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
conn_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("conn_id", default=None)

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_TOKEN_PARAM = re.compile(r"(?i)((?:token|access_token|refresh_token|password)=)[^&\s\"']+")
_AUTH = re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:bearer\s+)?[^\s,\"']+")


def scrub(text: str) -> str:
    """Replace JWT-looking strings, token/password query params and Authorization values."""
    text = _JWT.sub("[jwt]", text)
    text = _TOKEN_PARAM.sub(r"\1[redacted]", text)
    return _AUTH.sub(r"\1[redacted]", text)


class ContextFilter(logging.Filter):
    """Stamps the current request id / connection id on every record (works inside tasks,
    which copy the context at creation)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # A line may name its connection itself (``extra``): a socket's callbacks do not run
        # in a context of their own.
        record.request_id = getattr(record, "request_id", None) or request_id.get()
        record.conn_id = getattr(record, "conn_id", None) or conn_id.get()
        return True


class SamplingFilter(logging.Filter):
    """At most ``per_second`` lines per message template per second; the first line after a
    suppressed second carries ``suppressed=N``. Templates tracked: at most ``max_templates``
    (the oldest-inserted is evicted when full)."""

    def __init__(
        self,
        per_second: int = 20,
        max_templates: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._clock = clock
        self.per_second = per_second
        self.max_templates = max_templates
        self._state: dict[str, list[int]] = {}  # template -> [second, count, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        key = f"{record.name}:{record.msg}"
        now = int(self._clock())
        st = self._state.get(key)
        if st is None:
            if len(self._state) >= self.max_templates:
                del self._state[next(iter(self._state))]
            st = self._state[key] = [now, 0, 0]
        if st[0] != now:
            record.suppressed = st[2]
            st[0], st[1], st[2] = now, 0, 0
        st[1] += 1
        if st[1] > self.per_second:
            st[2] += 1
            return False
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        for field in ("request_id", "conn_id", "suppressed"):
            value = getattr(record, field, None)
            if value:
                out[field] = value
        if record.exc_info:
            out["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(out, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = scrub(super().format(record))
        suppressed = getattr(record, "suppressed", 0)
        return f"{line} [suppressed={suppressed}]" if suppressed else line


def configure(fmt: str, level: int | str = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.addFilter(SamplingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
