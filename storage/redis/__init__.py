"""The Redis client: one RESP connection type, the circuit breaker around it, the node's client.

Map of the package:
- ``client``: the node's one Redis client (shared connection, breaker and its probe, ``call``,
  ``script`` by SHA1, ``node_id``), handed to the broker, presence, hot counters, rate limits
  and revocations alike.
- ``cluster``: the same client on a Redis Cluster (ElastiCache cluster mode): the slot map
  from ``CLUSTER SLOTS``, a connection per primary, ``MOVED``/``ASK`` followed, the map read
  again on a redirect, a lost connection and periodically.
- ``slots``: a key's slot (CRC16, hash tags) and the tagged partitions presence and hot
  counters split their state into.
- ``presence``: presence shared by every node (counters, node liveness and records, the reap
  of a dead node's entries), written by the ``presence_*`` scripts.
- ``counts``: the hot counters' state (a hash per video, the marks of the next push and
  flush, their locks), changed and pushed by the ``counts_*`` scripts.
- ``trending``: trending shared by every node (a sorted set per scope and bucket), by the
  ``trending_*`` scripts.
- ``lua``: the Lua scripts, one file each, named for what they do (read with ``client.lua``).
- ``resp``: a pipelined RESP2 connection on hiredis (commands, scripts, push messages).
- ``breaker``: the circuit breaker that stops callers waiting on a Redis that stopped answering.
"""
