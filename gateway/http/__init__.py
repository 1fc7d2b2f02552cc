"""The HTTP transport: REST fallbacks, accounts, media uploads, and the server under them.

Map of the package:
- ``request``: request helpers shared by the routes and the WebSocket upgrade (JSON bodies,
  the caller's identity).
- ``errors``: the JSON error shape and its middleware.
- ``request_id``: the request id of every REST call (``X-Request-Id``), carried into its log lines.
- ``security``: REST rate limits, the WebSocket Origin check, security headers.
- ``server``: what a connection may hold before it signs in; header and body timeouts.
- ``routes``: one declaration per route (``Route``: method, path, op or handler, params,
  answers, errors, cache policy); the aiohttp route, the OpenAPI entry and the ``ETag`` /
  ``Cache-Control`` rules all derive from it.
- ``rest``: the WebSocket upgrade, auth, users, channels, groups, health and metrics routes.
- ``social``: videos, likes, comments and shares (ETag, Cache-Control, 304).
- ``follows``: follows, blocks, the home feed and re-shares.
- ``devices``: push devices (register, list, delete).
- ``notifications``: push preferences (kinds, quiet hours) and conversation mutes.
- ``media``: the media backend's lifecycle and the upload and playback routes.
- ``server_api``: the server API for trusted back ends (``/server/v1``, API keys, audit) and
  its admin page (files in ``admin/``).
- ``web``: the web app (``/``, ``/app/*``) and the JavaScript SDK, with the page's CSP.
- ``openapi``: every route table in mount order, and the OpenAPI document built from them.
"""
