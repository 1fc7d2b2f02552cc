"""The aiohttp application: transports, fan-out and wiring; no chat rules live here.

Map of the package (one sub-package per job; each has its own map):
- ``__main__``: ``python -m gateway``, the entry point.
- ``settings``: ``MOOSIC_*`` variables, validated at start-up.
- ``app``: the application factory and one cleanup context per resource.
- ``keys``: every typed ``AppKey``.
- ``metrics``: the counters, gauges and latency histograms served at ``GET /metrics``
  (through ``prometheus-client``, OpenMetrics on request).
- ``timed_store``: the store as handed out, each call timed per backend and operation.
- ``aws``: the base of the sinks on one AWS service (SES, SNS, Kinesis): its aioboto3 client.
- ``emf``: the same metrics as CloudWatch Embedded Metric Format lines on stdout (optional).
- ``logs``: log lines as text or JSON (``MOOSIC_LOG_FORMAT``), scrubbed of tokens, sampled in floods.
- ``ws``: the WebSocket transport (upgrade, frame codec, connection, op registry).
- ``http``: the HTTP transport (request helpers, errors, server limits, REST routes, OpenAPI).
- ``fanout``: the real-time core (hub, brokers, presence, hot counters).
- ``auth``: who the caller is (access tokens, JWKS, revoked sessions).
- ``guard``: who may come in and how fast (rate limits, the country gate).
- ``clickstream``: the per-node buffer of accepted clickstream events and its sinks (files,
  Kinesis).
- ``mail``: the per-node queue of outgoing mail (verification, password reset) and its sinks
  (``.eml`` files, SES).
- ``regions``: several regions as one service: publishes forwarded to a channel's home
  region, its events relayed into this region's fan-out and store (docs/regions.md).
- ``push``: the drainer of the store's push outbox (claims under a lease, the per-user cap) and
  its sinks (JSON lines, SNS mobile push).

Layering: ``gateway`` imports ``handlers``, ``storage`` and ``media``; nothing below imports it.
"""
