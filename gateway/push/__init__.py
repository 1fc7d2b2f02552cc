"""Push notifications: the store's outbox drained by every node, to SNS or JSON-lines files.

Which messages notify whom is decided in ``handlers.notify`` and written to the store's outbox
(``storage.push``); this package sends what is due.

Map of the package:
- ``sink``: what a sink is (one send to one device, and its verdict) and the rendered ``Push``.
- ``files``: the default sink, JSON lines in ``MOOSIC_PUSH_DIR``.
- ``sns``: Amazon SNS mobile push (a platform endpoint per device, made on its first send).
- ``drain``: the drainer: claims under a lease, the per-user cap, device retries, dead tokens.
- ``service``: builds the decider and the drainer from settings, with their metrics.
"""
