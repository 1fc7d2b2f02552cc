"""Thin per-target adapters: how each server's wire protocol frames the same few operations.

The client (client.py) is the same for every target; an adapter only builds the frames for
join and publish, tells event frames from control frames, and handles the control frames.
"""

import json
from abc import ABC, abstractmethod
from typing import Protocol


class Peer(Protocol):
    """What an adapter may do to the connection it serves."""

    token: str

    def send(self, frame: bytes) -> None:
        """Send one text frame."""

    def set_ready(self) -> None:
        """Mark the connection authenticated and usable."""

    def refuse(self, reason: str) -> None:
        """Fail the connection's handshake (or note a server-side disconnect)."""

    def reply(self, req_id: int, ok: bool, detail: str) -> None:
        """Deliver the server's answer to request req_id."""


class Wire(ABC):
    """One target's framing of connect, join, publish and events."""

    @abstractmethod
    def ws_url(self, port: int, token: str) -> str:
        """URL to open on 127.0.0.1:port for a user holding token."""

    @abstractmethod
    def is_event(self, payload: bytes) -> bool:
        """Whether a text frame is a pushed channel event (the hot path: keep it cheap)."""

    @abstractmethod
    def join_frame(self, req_id: int, channel: str) -> bytes:
        """Frame that subscribes to channel and asks for a reply to req_id."""

    @abstractmethod
    def publish_frame(self, req_id: int, channel: str, data: bytes) -> bytes:
        """Frame that publishes the JSON object data to channel, reply to req_id."""

    @abstractmethod
    def on_connected(self, peer: Peer) -> None:
        """Called once the WebSocket upgrade is done."""

    @abstractmethod
    def on_control(self, peer: Peer, payload: bytes) -> None:
        """Handle a text frame that is not an event."""


class MoosicWire(Wire):
    """The gateway's JSON protocol: token in the query, the upgrade itself authenticates."""

    _EVENT = b'"op":"event"'
    _EVENT_SPACED = b'"op": "event"'

    def ws_url(self, port: int, token: str) -> str:
        """GET /ws?token=<jwt>."""
        return f"ws://127.0.0.1:{port}/ws?token={token}"

    def is_event(self, payload: bytes) -> bool:
        """Events carry "op":"event" (compact or with a space)."""
        return self._EVENT in payload or self._EVENT_SPACED in payload

    def join_frame(self, req_id: int, channel: str) -> bytes:
        """{"op":"subscribe","id":N,"channel":C}."""
        return json.dumps({"op": "subscribe", "id": req_id, "channel": channel}).encode()

    def publish_frame(self, req_id: int, channel: str, data: bytes) -> bytes:
        """{"op":"publish","id":N,"channel":C,"data":{...}}."""
        return b'{"op":"publish","id":%d,"channel":"%s","data":%s}' % (
            req_id,
            channel.encode(),
            data,
        )

    def on_connected(self, peer: Peer) -> None:
        """A bad token is refused before the upgrade, so an open socket is authenticated."""
        peer.set_ready()

    def on_control(self, peer: Peer, payload: bytes) -> None:
        """Match replies and errors to their request ids; ignore other pushes."""
        msg = json.loads(payload)
        if msg.get("op") == "reply":
            peer.reply(int(msg.get("id", 0)), True, "")
        elif msg.get("op") == "error":
            peer.reply(int(msg.get("id") or 0), False, f"{msg.get('code')}: {msg.get('message')}")


class SocketIOWire(Wire):
    """Engine.IO v4 / Socket.IO v5 over a raw WebSocket, token in the CONNECT packet."""

    def ws_url(self, port: int, token: str) -> str:
        """The Engine.IO WebSocket endpoint (the token goes in the CONNECT packet)."""
        return f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"

    def is_event(self, payload: bytes) -> bool:
        """Engine.IO message (4) carrying a Socket.IO EVENT (2) without ack id."""
        return payload.startswith(b"42[")

    def join_frame(self, req_id: int, channel: str) -> bytes:
        """42<id>["join",C]."""
        return b'42%d["join","%s"]' % (req_id, channel.encode())

    def publish_frame(self, req_id: int, channel: str, data: bytes) -> bytes:
        """42<id>["publish",{"channel":C,"data":{...}}]."""
        return b'42%d["publish",{"channel":"%s","data":%s}]' % (req_id, channel.encode(), data)

    def on_connected(self, peer: Peer) -> None:
        """Wait for the Engine.IO OPEN packet before connecting the namespace."""

    def on_control(self, peer: Peer, payload: bytes) -> None:
        """OPEN, PING, CONNECT, CONNECT_ERROR, ACK and DISCONNECT packets."""
        if payload == b"2":
            peer.send(b"3")
        elif payload.startswith(b"0"):
            peer.send(b"40" + json.dumps({"token": peer.token}).encode())
        elif payload.startswith(b"40"):
            peer.set_ready()
        elif payload.startswith(b"43"):
            body = payload.index(b"[")
            peer.reply(int(payload[2:body]), True, "")
        elif payload.startswith(b"44"):
            peer.refuse(f"connect refused: {payload[2:].decode(errors='replace')}")
        elif payload.startswith(b"41"):
            peer.refuse("disconnected by the server")
