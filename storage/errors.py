"""Errors raised by every storage backend."""


class StorageError(Exception):
    """Base class for storage failures."""


class Conflict(StorageError):
    """A uniqueness rule was broken (for example a taken username)."""


class NotFound(StorageError):
    """The record does not exist."""


class Unavailable(StorageError):
    """The backend could not be reached or timed out; retrying may help."""
