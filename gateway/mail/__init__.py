"""Mail delivery: a bounded per-node queue of outgoing mail and the sinks that deliver it.

Handlers build a :class:`handlers.ports.Mail` and hand it to :meth:`outbox.MailQueue.send`,
which never waits; one background task per node turns each into an RFC 5322 message and
delivers it, retrying with backoff. A mail is lost when the queue is full (it is dropped and
counted), when the node stops before it was sent (counted), or after the last retry.

Map of the package:
- ``message``: the RFC 5322 message of a mail (standard library ``email`` package).
- ``outbox``: the bounded queue, its delivery task, retries and backoff, metrics.
- ``files``: the default sink: one ``.eml`` file per message in ``MOOSIC_MAIL_DIR``.
- ``ses``: Amazon SES ``SendRawEmail`` through aioboto3 (``MOOSIC_MAIL_SINK=ses``).
- ``service``: builds the sink and queue from settings; the app's cleanup context.
"""
