"""The real-time core: who on this node wants which channel, and events between nodes.

Map of the package:
- ``hub``: local subscribers per channel, ordered delivery, gap fill, encoded-once frames.
- ``broker``: the broker protocol and the event envelope; ``broker_memory`` (one node,
  in-process), ``broker_redis`` (pub/sub across nodes, recent windows in Redis) and
  ``broker_cluster`` (the same on a Redis Cluster: sharded pub/sub, a subscriber per shard).
- ``presence``: who is online and in which channel, shared by every node, and its pushes.
- ``counts``: the videos' hot counters (coalesced ``counts`` pushes, batch flushes to the store).
"""
