"""Who may come in and how fast: rate limits, the country gate, the edge checks of a request.

Map of the package:
- ``ratelimit``: token buckets per rule and subject (in-process, or shared through Redis).
- ``geo``: the country gate, trusted proxies and the client's address.
- ``edge``: the checks both transports make of a request (address, country, WebSocket
  ``Origin``, a rate-limit token, the access token), on aiohttp's request.
"""
