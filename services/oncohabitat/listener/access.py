"""Who may open an association: calling-AE allow-list, peer-address allow-list, called AE title."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from oncohabitat.listener.errors import ListenerConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``"10.0.0.0/8"``, ``"192.168.1.7"``, ``"::1"`` ... as networks (ListenerConfigError if not one)."""
    networks: list[IPNetwork] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ListenerConfigError(f"peer allow-list entry {value!r} is not an IP address or network") from exc
    return tuple(networks)


@dataclass(frozen=True)
class AccessPolicy:
    """Association access rules; an empty allow-list allows everyone.

    Attributes:
        calling_ae_titles: calling AE titles allowed (compared after stripping spaces).
        peer_networks: peer IP networks allowed.
        called_ae_title: when set, associations addressed to another AE title are refused.
    """

    calling_ae_titles: frozenset[str] = field(default_factory=frozenset)
    peer_networks: tuple[IPNetwork, ...] = ()
    called_ae_title: str | None = None

    def peer_allowed(self, address: str) -> bool:
        """True when ``address`` (IPv4/IPv6 text) is in the peer allow-list (or it is empty)."""
        if not self.peer_networks:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.peer_networks)

    def calling_allowed(self, ae_title: str) -> bool:
        """True when the calling AE title is allowed."""
        return not self.calling_ae_titles or ae_title.strip() in self.calling_ae_titles

    def called_allowed(self, ae_title: str) -> bool:
        """True when the association is addressed to us (or the called AE title is not checked)."""
        return self.called_ae_title is None or ae_title.strip() == self.called_ae_title.strip()
