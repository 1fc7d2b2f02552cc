"""Who may come in and how fast: rate limits and the country gate.

Map of the package:
- ``ratelimit``: token buckets per rule and subject (in-process, or shared through Redis).
- ``geo``: the country gate, trusted proxies and the client's address.
"""
