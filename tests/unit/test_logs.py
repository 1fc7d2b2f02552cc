"""Unit tests for gateway/logs.py (issue 17): JSON lines, ids, scrubbing, sampling."""

from __future__ import annotations

import io
import json
import logging

from gateway import logs

NOW = [100.0]


def _capture() -> tuple[logging.Logger, io.StringIO, logging.StreamHandler[io.StringIO]]:
    buf = io.StringIO()
    handler: logging.StreamHandler[io.StringIO] = logging.StreamHandler(buf)
    handler.addFilter(logs.ContextFilter())
    handler.addFilter(logs.SamplingFilter(per_second=5, max_templates=4, clock=lambda: NOW[0]))
    handler.setFormatter(logs.JsonFormatter())
    lg = logging.getLogger("test_logs")
    lg.handlers[:] = [handler]
    lg.propagate = False
    lg.setLevel(logging.INFO)
    return lg, buf, handler


def test_json_lines_carry_ids_and_never_a_token() -> None:
    lg, buf, _ = _capture()
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl"
    tok_r = logs.conn_id.set("c-42")
    req_r = logs.request_id.set("r-7")
    try:
        lg.info("ws connect /ws?token=%s", token)
        lg.info("header Authorization: Bearer %s", token)
        lg.info("refresh with %s", token)
    finally:
        logs.conn_id.reset(tok_r)
        logs.request_id.reset(req_r)
    text = buf.getvalue()
    assert token not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 3
    assert all(line["conn_id"] == "c-42" and line["request_id"] == "r-7" for line in lines)


def test_sampling_caps_a_flood() -> None:
    lg, buf, _ = _capture()
    NOW[0] = 200.0
    for i in range(1000):
        lg.warning("flood %d", i)
    assert len(buf.getvalue().splitlines()) == 5
    NOW[0] = 201.0
    lg.warning("flood %d", 1000)
    last = json.loads(buf.getvalue().splitlines()[-1])
    assert last["suppressed"] == 995
