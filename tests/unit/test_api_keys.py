"""Server API keys: settings parsing (never echoed), matching every key, fingerprints, and the
hub's node-to-node disconnect command."""

from __future__ import annotations

import hmac
from typing import Any

import pytest

from gateway.auth import api_keys
from gateway.auth.api_keys import ApiKeys, fingerprint, presented_key
from gateway.fanout.broker_memory import MemoryBroker
from gateway.fanout.hub import CONTROL_CHANNEL, Hub
from gateway.metrics import Metrics
from gateway.settings import SettingsError, load_settings

SECRET = "s" * 32
ONE = "one-key-0123456789-abcdefghijklmnopqrst"
TWO = "two-key-0123456789-abcdefghijklmnopqrst"


def test_keys_are_parsed_several_at_once() -> None:
    settings = load_settings(
        {"MOOSIC_JWT_SECRET": SECRET, "MOOSIC_SERVER_API_KEYS": f" {ONE} , {TWO},"}
    )
    assert settings.http.server_api_keys == (ONE, TWO)
    assert load_settings({"MOOSIC_JWT_SECRET": SECRET}).http.server_api_keys == ()
    assert (
        load_settings(
            {"MOOSIC_JWT_SECRET": SECRET, "MOOSIC_SERVER_API_KEYS": ""}
        ).http.server_api_keys
        == ()
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (f"{ONE},short-key", "every key must be at least 32 characters (not number 2)"),
        (f"{ONE},{ONE}", "a key is listed twice"),
        (ONE + "\u00e9", "keys must be printable ASCII"),
    ],
)
def test_bad_keys_are_refused_without_showing_them(value: str, problem: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"MOOSIC_JWT_SECRET": SECRET, "MOOSIC_SERVER_API_KEYS": value})
    assert caught.value.problems == [f"MOOSIC_SERVER_API_KEYS=(not shown): {problem}"]
    assert ONE not in str(caught.value)
    assert "short-key" not in str(caught.value)


def test_the_private_port_is_checked() -> None:
    settings = load_settings({"MOOSIC_JWT_SECRET": SECRET, "MOOSIC_SERVER_API_PORT": "9090"})
    assert (settings.http.server_api_port, settings.http.server_api_host) == (9090, "127.0.0.1")
    assert load_settings({"MOOSIC_JWT_SECRET": SECRET}).http.server_api_port is None
    with pytest.raises(SettingsError) as caught:
        load_settings(
            {"MOOSIC_JWT_SECRET": SECRET, "MOOSIC_PORT": "9090", "MOOSIC_SERVER_API_PORT": "9090"}
        )
    assert caught.value.problems == ["MOOSIC_SERVER_API_PORT: must differ from MOOSIC_PORT"]
    with pytest.raises(SettingsError):
        load_settings({"MOOSIC_JWT_SECRET": SECRET, "MOOSIC_SERVER_API_PORT": "70000"})


def test_a_presented_key_matches_its_own_index_only() -> None:
    keys = ApiKeys((ONE, TWO))
    assert (keys.match(ONE), keys.match(TWO)) == (0, 1)
    for wrong in (None, "", ONE[:-1], ONE + "x", TWO.upper(), ONE + "," + TWO):
        assert keys.match(wrong) is None
    assert ApiKeys(()).match(ONE) is None
    assert not ApiKeys(())
    assert len(keys) == 2


def test_every_key_is_compared_even_after_a_match(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(api_keys.hmac, "compare_digest", counting)
    keys = ApiKeys((ONE, TWO, "three-key-0123456789-abcdefghijklmnopq"))
    assert keys.match(ONE) == 0
    assert len(compared) == 3  # no early exit at the first key
    compared.clear()
    assert keys.match("nope") is None
    assert len(compared) == 3
    # Digests of one length are compared, whatever was presented.
    assert {len(a) for a, _b in compared} == {32}


def test_fingerprints_name_a_key_without_it() -> None:
    keys = ApiKeys((ONE, TWO))
    assert keys.fingerprints == (fingerprint(ONE), fingerprint(TWO))
    assert len(set(keys.fingerprints)) == 2
    for value in keys.fingerprints:
        assert len(value) == 8
        assert value not in ONE
        assert value not in TWO


def test_the_key_comes_from_bearer_or_x_api_key() -> None:
    assert presented_key(f"Bearer {ONE}", None) == ONE
    assert presented_key(f"bearer  {ONE} ", None) == ONE
    assert presented_key(None, f" {ONE}") == ONE
    assert presented_key(f"Basic {ONE}", ONE) is None  # a wrong Authorization is not skipped
    assert presented_key("Bearer ", None) is None
    assert presented_key(None, None) is None
    assert presented_key("", "") is None


class Socket:
    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.closed: list[tuple[int, str]] = []

    def deliver(self, frame: bytes) -> None:
        pass

    def disconnect(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))

    def abort(self) -> None:
        pass


async def test_a_disconnect_reaches_every_socket_of_the_user_through_the_control_channel() -> None:
    broker = MemoryBroker()
    hub = Hub(broker, Metrics(), max_watchers=10, heartbeat=30.0)
    await hub.start()
    try:
        alice, alice_too, bob = Socket("alice"), Socket("alice"), Socket("bob")
        for socket in (alice, alice_too, bob):
            hub.add_member(socket)  # type: ignore[arg-type]
        await hub.disconnect("alice", 4503, "bye")
        assert alice.closed == [(4503, "bye")]
        assert alice_too.closed == [(4503, "bye")]
        assert bob.closed == []
        # A malformed command is ignored, not raised.
        await broker.publish(CONTROL_CHANNEL, b'{"disconnect": "bob", "code": "x", "reason": 1}')
        await broker.publish(CONTROL_CHANNEL, b'{"disconnect": "bob"}')
        assert bob.closed == []
    finally:
        await hub.close()
