"""The Redis client: one RESP connection type and the circuit breaker around it.

Map of the package:
- ``resp``: a pipelined RESP2 connection on hiredis (commands, scripts, push messages).
- ``breaker``: the circuit breaker that stops callers waiting on a Redis that stopped answering.
"""
