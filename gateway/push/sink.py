"""What a push sink is: one send to one device, and the verdicts it may give.

A sink delivers a rendered :class:`Push` to one :class:`storage.push.Device` and says what
happened (:class:`Delivery`): sent, the token is dead (the device must go), or failed (try
again). The drainer (:mod:`gateway.push.drain`) owns retries, devices and the outbox; sinks only
talk to their provider.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from storage.push import Device


class Verdict(enum.Enum):
    SENT = "sent"
    GONE = "gone"
    """The provider says the token is dead (uninstalled app, disabled endpoint, bad token)."""
    FAILED = "failed"
    """Anything else (throttling, a server error, a time-out): worth another try."""


@dataclass(frozen=True, slots=True)
class Delivery:
    verdict: Verdict
    endpoint: str | None = None
    """The provider's name of the device when the send made (or learnt) one: remembered."""
    detail: str = ""
    """Why, for the log (an error code; never the token)."""


@dataclass(frozen=True, slots=True)
class Push:
    """One notification, rendered once for all of a user's devices."""

    kind: str
    """What it is: ``message``, ``mention``, ``follow``, ``comment``, ``video_ready``,
    ``video_rejected``."""
    user_id: str
    conversation: str
    """The notification's key: a message's channel, else ``{kind}:…`` (``mention:{channel}``,
    ``follow:{user}``, ``comment:{video}``, ``video_ready:{video}``, ``video_rejected:{video}``)."""
    count: int
    sender: str
    """The sender's user id (``system`` for a video's news)."""
    sender_name: str
    title: str
    body: str
    last_offset: int

    def data(self) -> dict[str, str | int]:
        """What the app gets besides the alert (to open the conversation at the right place)."""
        return {
            "kind": self.kind,
            "conversation": self.conversation,
            "count": self.count,
            "sender": self.sender,
            "last_offset": self.last_offset,
        }


class PushSink(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, device: Device, push: Push) -> Delivery:
        """Deliver ``push`` to ``device``; raises nothing (an error is a :class:`Delivery`)."""
        ...
