"""Red-team findings 1 and 3 of issue 21, replayed against real gateway processes.

1. A signed-in socket sends 125-byte pings and never reads its pongs. Every pong goes through
   the connection's one outbound bound (``MOOSIC_WS_MAX_BACKLOG_BYTES``), so the socket is
   closed with 4001 (slow consumer) once its unread pongs pass it. The frame budget is lifted
   on that node so the outbound bound is what acts (with the default budget a pinger at full
   speed is cut by the budget first, 4502, before it fills the kernel's buffers and the bound).
3. One socket floods inbound frames: ``ping`` ops, zero-length continuation frames, empty
   pongs, empty text frames. Every frame takes a token of the connection's budget
   (``MOOSIC_WS_FRAME_BURST``, ``MOOSIC_WS_FRAMES_PER_SECOND``); a socket kept at an empty
   budget for ``MOOSIC_WS_FLOOD_CLOSE_SECONDS`` is closed with 4502 (flooding).

Each test asserts the attacker's close code (read once it stops sending: the server keeps
reading a closing socket until ``MOOSIC_WS_CLOSE_TIMEOUT``, so the close frame is there to be
read instead of a reset), the node's resident memory (``VmRSS`` after, ``VmHWM`` peak) within
200 MB of before the attack, and that a bystander on the same node receives every message a
talker sends to its room while the attack runs, in order, with its exact content. Durations
are never asserted; ``loadtest/attacks/ws_flood.py`` measures the bystander's latency.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import JWT_SECRET
from tests.integration.test_ws import token_for
from tests.support.rawws import RawWebSocket
from tests.support.servers import GatewayNode

TEXT, CONTINUATION, PING, PONG = 0x1, 0x0, 0x9, 0xA
SLOW_CONSUMER, FLOODING = 4001, 4502
MESSAGES = 20
"""Messages the talker sends while the attack is in force, and again after its close."""
RSS_MARGIN_KB = 200 * 1024
"""Resident memory the node may gain during one attack (generous: the bounds are ~1 MiB)."""
WAIT = 30.0
"""Longest wait for something the node must do (a close, a pause); never asserted as a time."""
CHUNK = 256
"""Frames per ``sendall`` of the attacker; it checks whether to stop between chunks."""


# -- the nodes ---------------------------------------------------------------------------------


def start_node(work: Path, name: str, **env: str) -> GatewayNode:
    return GatewayNode(
        {
            "MOOSIC_DEV": "1",
            "MOOSIC_JWT_SECRET": JWT_SECRET,
            "MOOSIC_SQLITE_PATH": str(work / f"{name}.db"),
            "MOOSIC_LOG_LEVEL": "WARNING",
            "MOOSIC_WS_HEARTBEAT": "600",  # the bystander reads only at the end of a test
            # Long enough for an attacker to stop, then read its close frame, before the node
            # drops the closing socket (which would reset it instead).
            "MOOSIC_WS_CLOSE_TIMEOUT": "10",
            "MOOSIC_SHUTDOWN_TIMEOUT": "2",  # closing attackers are not waited for at the end
            **env,
        },
        work / f"{name}.log",
    ).start()


@pytest.fixture(scope="module")
def flood_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayNode]:
    """The default frame budget (2,000 at once, 1,000 a second); a flooder closed after 1 s."""
    node = start_node(
        tmp_path_factory.mktemp("ws-flood"), "flood", MOOSIC_WS_FLOOD_CLOSE_SECONDS="1"
    )
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def ping_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayNode]:
    """A 64 KiB outbound bound, and a frame budget high enough never to be the one that acts."""
    node = start_node(
        tmp_path_factory.mktemp("ws-ping"),
        "ping",
        MOOSIC_WS_MAX_BACKLOG_BYTES="65536",
        MOOSIC_WS_FRAMES_PER_SECOND="100000",
        MOOSIC_WS_FRAME_BURST="100000",
    )
    try:
        yield node
    finally:
        node.stop()


def metric(node: GatewayNode, name: str) -> float:
    with urllib.request.urlopen(node.base_url + "/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def memory_kb(node: GatewayNode) -> dict[str, int]:
    """The node's ``VmRSS`` (resident now) and ``VmHWM`` (resident at its peak), in kB."""
    assert node.process is not None
    found: dict[str, int] = {}
    for line in Path(f"/proc/{node.process.pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


# -- the clients -------------------------------------------------------------------------------


def connect(node: GatewayNode, user: str, **options: Any) -> RawWebSocket:
    return RawWebSocket("127.0.0.1", node.port, "/ws?token=" + token_for(user), **options)


def call(ws: RawWebSocket, request_id: int, **fields: Any) -> dict[str, Any]:
    """Send an op; read until its reply or error (pushes are skipped)."""
    ws.send_text(orjson.dumps({"id": request_id, **fields}).decode())
    while True:
        opcode, payload = ws.read_frame()
        if opcode == TEXT:
            frame: dict[str, Any] = orjson.loads(payload)
            if frame.get("op") in ("reply", "error") and frame.get("id") == request_id:
                return frame


class Attacker(threading.Thread):
    """Sends ``first``, then ``chunk`` over and over until told to stop; reads nothing."""

    def __init__(self, ws: RawWebSocket, chunk: bytes, frames: int, first: bytes = b"") -> None:
        super().__init__(daemon=True)
        self.ws = ws
        self.chunk = chunk
        self.per_chunk = frames
        self.first = first
        self.sent = 0
        self.stopping = threading.Event()
        self.error: OSError | None = None

    def run(self) -> None:
        try:
            for _ in self.ws.flood(self.first, self.chunk, self.stopping.is_set):
                self.sent += self.per_chunk
        except OSError as exc:  # a reset would be a failure: the test reports it
            self.error = exc
        finally:
            self.ws.sock.settimeout(WAIT)

    def stop(self) -> None:
        self.stopping.set()
        self.join(WAIT)
        assert not self.is_alive(), "the attacker could not stop sending"
        assert self.error is None, f"the attacker's socket failed while sending: {self.error!r}"


def run_attack(
    node: GatewayNode,
    name: str,
    chunk: bytes,
    *,
    first: bytes = b"",
    closes: str,
    in_force: Callable[[], bool] | None = None,
    **attacker_options: Any,
) -> tuple[int, str, Attacker]:
    """Attack ``node`` while a talker speaks to a bystander's room; check memory and delivery.

    The talker sends ``MESSAGES`` messages once the attack is in force, waits until the node
    counts the attacker's close in ``closes``, then sends ``MESSAGES`` more while the attacker
    is still sending. Return the attacker's close code and reason, and the attacker.
    """
    room = f"room:watch-{name}"
    bystander = connect(node, f"bystander-{name}")
    talker = connect(node, f"talker-{name}")
    attacker_ws = connect(node, f"attacker-{name}", **attacker_options)
    try:
        assert call(bystander, 1, op="subscribe", channel=room)["op"] == "reply"
        closed_before = metric(node, closes)
        before = memory_kb(node)["VmRSS"]

        attacker = Attacker(attacker_ws, chunk, CHUNK, first)
        attacker.start()
        wait_for(lambda: attacker.sent > 0 or attacker.error is not None, "a first chunk sent")
        if in_force is not None:
            wait_for(in_force, "the attack in force")

        said: list[dict[str, Any]] = []

        def say(count: int) -> None:
            for _ in range(count):
                data = {"text": f"{name} {len(said)}", "n": len(said)}
                reply = call(talker, 100 + len(said), op="publish", channel=room, data=data)
                assert reply["op"] == "reply", reply
                said.append(data)

        say(MESSAGES)
        wait_for(lambda: metric(node, closes) > closed_before, f"{closes} counted")
        say(MESSAGES)
        attacker.stop()
        code, reason, _frames = attacker_ws.read_close()

        heard: list[tuple[str, dict[str, Any]]] = []
        while len(heard) < len(said):
            opcode, payload = bystander.read_frame()
            frame = orjson.loads(payload) if opcode == TEXT else {}
            if frame.get("op") == "event" and frame.get("channel") == room:
                heard.append((frame["from"], frame["data"]))
        assert heard == [(f"talker-{name}", data) for data in said]

        after = memory_kb(node)
        assert after["VmRSS"] < before + RSS_MARGIN_KB, (before, after)
        assert after["VmHWM"] < before + RSS_MARGIN_KB, (before, after)
        assert metric(node, closes) == closed_before + 1
        return code, reason, attacker
    finally:
        for ws in (bystander, talker, attacker_ws):
            ws.close()


def frames(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """``CHUNK`` copies of one masked client frame, ready for one ``sendall``."""
    return b"".join(RawWebSocket.encode(opcode, payload, fin=fin) for _ in range(CHUNK))


def budget_spent(node: GatewayNode) -> Callable[[], bool]:
    """True once the node paused one more socket on an empty frame budget than it had."""
    pauses = metric(node, "moosic_ws_frame_budget_pauses_total")
    return lambda: metric(node, "moosic_ws_frame_budget_pauses_total") > pauses


# -- finding 1: pings whose pongs are never read -----------------------------------------------


def test_pings_never_read_are_closed_as_a_slow_consumer(ping_node: GatewayNode) -> None:
    code, reason, attacker = run_attack(
        ping_node,
        "pinger",
        frames(PING, b"p" * 125),
        closes="moosic_ws_slow_consumer_closes_total",
        rcvbuf=4096,  # a small window, so the node's buffers fill rather than the attacker's
    )
    assert (code, reason) == (SLOW_CONSUMER, "slow consumer")
    assert metric(ping_node, "moosic_ws_flood_closes_total") == 0
    assert attacker.sent > 0


# -- finding 3: floods of inbound frames -------------------------------------------------------


def test_op_frame_flood_is_closed_as_flooding(flood_node: GatewayNode) -> None:
    code, reason, _ = run_attack(
        flood_node,
        "ops",
        frames(TEXT, b'{"op":"ping","id":1}'),
        closes="moosic_ws_flood_closes_total",
        in_force=budget_spent(flood_node),
    )
    assert (code, reason) == (FLOODING, "too many frames: slow down")


def test_zero_length_continuations_are_closed_as_flooding(flood_node: GatewayNode) -> None:
    code, reason, _ = run_attack(
        flood_node,
        "continuations",
        frames(CONTINUATION, fin=False),
        first=RawWebSocket.encode(TEXT, b'{"op":"ping",', fin=False),
        closes="moosic_ws_flood_closes_total",
        in_force=budget_spent(flood_node),
    )
    assert (code, reason) == (FLOODING, "too many frames: slow down")


def test_empty_pongs_are_closed_as_flooding(flood_node: GatewayNode) -> None:
    code, reason, _ = run_attack(
        flood_node,
        "pongs",
        frames(PONG),
        closes="moosic_ws_flood_closes_total",
        in_force=budget_spent(flood_node),
    )
    assert (code, reason) == (FLOODING, "too many frames: slow down")


def test_empty_text_frames_are_closed_as_flooding(flood_node: GatewayNode) -> None:
    code, reason, _ = run_attack(
        flood_node,
        "empty",
        frames(TEXT),
        closes="moosic_ws_flood_closes_total",
        in_force=budget_spent(flood_node),
    )
    assert (code, reason) == (FLOODING, "too many frames: slow down")


def test_the_burst_is_granted_once_and_a_burst_is_throttled_not_closed(
    flood_node: GatewayNode,
) -> None:
    """2,500 frames at once on a new socket: 2,000 pass, the rest wait for the refill (0.5 s).

    The bucket used to start its refill clock at loop time 0, so its first refill filled it
    again: 4,000 frames went through before any pause. The socket is only throttled, never
    closed: once the burst is over it is answered as usual.
    """
    pauses = budget_spent(flood_node)
    ws = connect(flood_node, "bursty")
    try:
        ws.sock.sendall(b"".join(RawWebSocket.encode(PONG, b"") for _ in range(2500)))
        wait_for(pauses, "a pause on an empty frame budget")
        assert call(ws, 7, op="ping")["op"] == "reply"
    finally:
        ws.close()
