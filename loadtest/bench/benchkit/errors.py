"""Why a scenario could not be run against a target (each is reported, then the run goes on)."""

from pathlib import Path


class BenchError(RuntimeError):
    """A scenario could not be run against a target; the message says why."""


class ProcessExitedError(BenchError):
    """A server process of the cluster died."""

    def __init__(self, name: str, code: int, log: Path) -> None:
        super().__init__(f"{name} exited with {code}; see {log}")


class NotReadyError(BenchError):
    """A server never passed its readiness probe."""

    def __init__(self, what: str, timeout_s: float, log: Path) -> None:
        super().__init__(f"{what} not ready after {timeout_s:.0f} s; see {log}")


class ConnectionClosedError(BenchError):
    """The connection closed while something waited on it."""

    def __init__(self) -> None:
        super().__init__("connection closed")


class SomeFailedError(BenchError):
    """Some of many connections or requests failed."""

    def __init__(self, what: str, failed: int, total: int, first: str) -> None:
        super().__init__(f"{failed} of {total} {what} failed, first: {first}")


class NotDeliveredError(BenchError):
    """The first message did not reach every subscriber in time."""

    def __init__(self, got: int, expected: int, notes: list[str]) -> None:
        super().__init__(
            f"only {got} of {expected} subscribers got the first message; notes: {notes}"
        )
