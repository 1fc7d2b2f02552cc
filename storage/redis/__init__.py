"""The Redis client: one RESP connection type, the circuit breaker around it, the node's client.

Map of the package:
- ``client``: the node's one Redis client (shared connection, breaker and its probe, ``call``,
  ``script`` by SHA1, ``node_id``), handed to the broker, presence, hot counters, rate limits
  and revocations alike.
- ``lua``: the Lua scripts, one file each, named for what they do (read with ``client.lua``).
- ``resp``: a pipelined RESP2 connection on hiredis (commands, scripts, push messages).
- ``breaker``: the circuit breaker that stops callers waiting on a Redis that stopped answering.
"""
