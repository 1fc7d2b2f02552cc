"""The country gate against the real offline database (iptocc)."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.guard.geo import CountryGate

PROXY = (ipaddress.ip_network("10.0.0.0/8"),)
KH_ADDRESS = "103.16.60.1"  # an address in a Cambodian allocation
US_ADDRESS = "8.8.8.8"


def gate(
    allowed: frozenset[str] | None = frozenset({"KH"}), *, allow_local: bool = False
) -> CountryGate:
    return CountryGate(allowed, PROXY, allow_local=allow_local)


def test_direct_clients_are_looked_up() -> None:
    assert gate().check(KH_ADDRESS, {}).allowed
    verdict = gate().check(US_ADDRESS, {})
    assert (verdict.allowed, verdict.country) == (False, "US")


def test_header_from_an_untrusted_peer_is_ignored() -> None:
    verdict = gate().check(US_ADDRESS, {"CloudFront-Viewer-Country": "KH"})
    assert (verdict.allowed, verdict.country) == (False, "US")


def test_trusted_proxy_header_and_forwarded_for() -> None:
    assert gate().check("10.1.2.3", {"CloudFront-Viewer-Country": "KH"}).allowed
    assert not gate().check("10.1.2.3", {"CloudFront-Viewer-Country": "US"}).allowed
    # Without the country header, the last hop that is not a trusted proxy is looked up.
    verdict = gate().check("10.1.2.3", {"X-Forwarded-For": f"{KH_ADDRESS}, 10.9.9.9"})
    assert (verdict.allowed, verdict.client_ip) == (True, KH_ADDRESS)
    spoofed = gate().check("10.1.2.3", {"X-Forwarded-For": f"{KH_ADDRESS}, {US_ADDRESS}"})
    assert (spoofed.allowed, spoofed.client_ip) == (False, US_ADDRESS)


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "192.168.1.10", "172.16.0.5"])
def test_local_addresses_pass_only_in_development(address: str) -> None:
    assert not gate().check(address, {}).allowed
    assert gate(allow_local=True).check(address, {}).allowed


def test_star_allows_everyone_and_lists_are_respected() -> None:
    assert gate(None).check(US_ADDRESS, {}).allowed
    assert gate(None).check("127.0.0.1", {}).allowed
    assert gate(frozenset({"KH", "US"})).check(US_ADDRESS, {}).allowed
    assert not gate().check(None, {}).allowed
