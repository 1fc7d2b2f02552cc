"""The country gate: which country a request comes from, and whether it may sign in.

The country is read from ``CloudFront-Viewer-Country`` only when the TCP peer is a trusted
proxy (so a client cannot claim a country by sending the header itself); otherwise the peer's
address (or, behind a trusted proxy without that header, the last untrusted hop of
``X-Forwarded-For``) is looked up in the offline ``iptocc`` database. Loopback and private
addresses have no country: they pass only in a development run (``MOOSIC_DEV=1``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

import iptocc

from gateway.settings import IPNetwork

COUNTRY_HEADER = "CloudFront-Viewer-Country"
FORWARDED_FOR = "X-Forwarded-For"


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    country: str | None
    client_ip: str
    reason: str


def in_networks(
    host: str | ipaddress.IPv4Address | ipaddress.IPv6Address, networks: tuple[IPNetwork, ...]
) -> bool:
    """Whether ``host`` (an address, or its text) is in one of ``networks``; a name is not."""
    if isinstance(host, str):
        try:
            host = ipaddress.ip_address(host)
        except ValueError:
            return False
    return any(host in net for net in networks)


class CountryGate:
    """Decide per request; stateless apart from its settings."""

    def __init__(
        self,
        allowed: frozenset[str] | None,
        trusted_proxies: tuple[IPNetwork, ...],
        *,
        allow_local: bool,
    ) -> None:
        self._allowed = allowed
        self._trusted = trusted_proxies
        self._allow_local = allow_local

    def _trusted_peer(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return in_networks(address, self._trusted)

    def client_address(self, peer: str | None, headers: Mapping[str, str]) -> str:
        """Return the client's address: the peer, or the last untrusted X-Forwarded-For hop."""
        if not peer:
            return ""
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return peer
        if not self._trusted_peer(address):
            return peer
        hops = [h.strip() for h in headers.get(FORWARDED_FOR, "").split(",") if h.strip()]
        for hop in reversed(hops):
            try:
                if not self._trusted_peer(ipaddress.ip_address(hop)):
                    return hop
            except ValueError:
                return peer
        return peer

    def check(self, peer: str | None, headers: Mapping[str, str]) -> Verdict:
        """Return whether a request from ``peer`` with ``headers`` may sign in or connect."""
        client = self.client_address(peer, headers)
        country: str | None = None
        try:
            address = ipaddress.ip_address(peer or "")
        except ValueError:
            address = None
        if address is not None and self._trusted_peer(address):
            header = headers.get(COUNTRY_HEADER, "").strip().upper()
            if len(header) == 2 and header.isalpha():
                country = header
        if country is None:
            try:
                client_address = ipaddress.ip_address(client)
            except ValueError:
                return Verdict(self._allowed is None, None, client, "no usable client address")
            if not client_address.is_global:
                if self._allowed is None or self._allow_local:
                    return Verdict(True, None, client, "local address (development run)")
                return Verdict(False, None, client, "local or private address")
            found = iptocc.country_code(str(client_address))
            country = found.upper() if isinstance(found, str) and found else None
        if self._allowed is None:
            return Verdict(True, country, client, "all countries allowed")
        if country is None:
            return Verdict(False, None, client, "country unknown")
        if country in self._allowed:
            return Verdict(True, country, client, "allowed country")
        return Verdict(False, country, client, f"country {country} is not allowed")
