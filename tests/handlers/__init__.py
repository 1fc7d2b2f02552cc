"""Handler tests: ops run through a fake ``Services``, no sockets, no gateway."""
