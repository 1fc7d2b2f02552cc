"""Clickstream delivery: the bounded per-node buffer of accepted events and the sinks it feeds.

Events are validated, deduplicated and enriched by ``handlers.events`` on the request's path
(no I/O there); what is taken waits in this node's buffer and is written by one background
task, never by a request.

Map of the package:
- ``buffer``: the bounded buffer (full = ``server_busy``), flushed on size, on an interval and
  on shutdown.
- ``files``: JSON-lines files rotated by size and age (the default sink; also the dead letters).
- ``kinesis``: Kinesis Data Streams through aioboto3 ``PutRecords``: batches of at most 500
  records and 5 MiB, retries of only the failed records with backoff, then the dead-letter file.
- ``tally``: each node's sums of views, watch time and engagement per video, handed every
  second to the hot counters and to trending.
- ``service``: builds the buffer, sink and intake from settings; the app's cleanup context and
  metrics.
"""
