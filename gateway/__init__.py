"""The aiohttp application: transports, fan-out and wiring; no chat rules live here.

Map of the package:
- ``__main__``: ``python -m gateway``, the entry point.
- ``settings``: ``MOOSIC_*`` variables, validated at start-up.
- ``app``: the application factory and one cleanup context per resource.
- ``keys``: every typed ``AppKey``.
- ``ws``: ``GET /ws``, the WebSocket upgrade and frame loop.
- ``rest``: REST routes (auth, channels, groups, health, metrics).
- ``http`` and ``errors``: request helpers; the JSON error shape and its middleware.
- ``registry``: decode-and-validate of frames, op lookup, the reply/error envelope.
- ``connection``: one socket's subscriptions and bounded outbound path.
- ``hub``: local subscribers per channel; delivery of frames encoded once.
- ``broker``: ``memory`` (one node) and ``redis`` (pub/sub across nodes, own RESP client).
- ``protocol``: close codes and the server frame encoder.
- ``tokens``: JWT access tokens (key ids, rotation); ``jwks``: RS256 keys of an identity
  provider. ``revocation``: logged-out sessions, shared by every node.
- ``ratelimit``: token buckets (in-process or Redis). ``security``: the REST limits
  middleware, the WebSocket Origin check, security headers. ``openapi``: the HTTP API document.
- ``geo``: the country gate. ``metrics``: counters.
- ``counts``: the videos' hot counters (coalesced ``counts`` pushes, batch flushes to the store).
  ``rest_social``: the video, like, comment and share routes (ETag, Cache-Control, 304);
  ``social_openapi``: their entries in the API document.
"""
