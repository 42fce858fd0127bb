"""Server keys: ``[dns://|tls://|https://]ZONE[:PORT]`` -> (transport, zone, port) addresses.

A reverse zone may be written as a CIDR. As in CoreDNS, a prefix that does not end on a label
boundary (an octet for IPv4, a nibble for IPv6) is rounded up to the next boundary and split into
every zone at that boundary, so ``10.0.0.0/22`` serves the four zones ``0..3.0.10.in-addr.arpa.``.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

import dns.name
import dns.reversename

from interkube.corefile.lexer import Token
from interkube.errors import ConfigError

TRANSPORT_DNS = "dns"
TRANSPORT_TLS = "tls"
TRANSPORT_HTTPS = "https"  # DNS over HTTPS (RFC 8484), served by interkube.server.doh
DEFAULT_PORTS = {TRANSPORT_DNS: 53, TRANSPORT_TLS: 853, TRANSPORT_HTTPS: 443}
_UNSUPPORTED = ("grpc", "https3", "quic")


class ZoneAddr(NamedTuple):
    """One zone a server block serves, on one transport and port.

    A NamedTuple, not a dataclass: a dataclass is a few exec'd functions at import, a millisecond
    of every start (issue 18)."""

    transport: str
    zone: str  # fully qualified, lower case; "." for the root
    port: int

    def __str__(self) -> str:
        return f"{self.transport}://{self.zone}:{self.port}"


def normalize_zone(text: str) -> str:
    """Lower-case, fully qualified presentation form of a domain name."""
    try:
        name = dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        raise ValueError(f"{text!r} is not a valid domain name: {exc}") from exc
    return name.to_text().lower()


def reverse_zones(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[str]:
    """The reverse zones that exactly cover ``network``, one per label-boundary subnet."""
    step = 8 if network.version == 4 else 4
    boundary = -(-network.prefixlen // step) * step  # round up to the next label boundary
    zones = []
    for subnet in network.subnets(new_prefix=boundary):
        rev = dns.reversename.from_address(str(subnet.network_address))
        # Keep only the labels the prefix fixes: drop the host part's labels from the front.
        drop = (network.max_prefixlen - boundary) // step
        zones.append(dns.name.Name(rev.labels[drop:]).to_text().lower())
    return zones


def parse_key(tok: Token, dns_port: int | None = None) -> list[ZoneAddr]:
    """Parse one server key; a CIDR key may yield several zones."""
    text = tok.text
    transport = TRANSPORT_DNS
    if "://" in text:
        transport, _, text = text.partition("://")
        transport = transport.lower()
        if transport in _UNSUPPORTED:
            raise tok.error(f"transport {transport}:// is not supported (use dns://, tls:// or https://)")
        if transport not in DEFAULT_PORTS:
            raise tok.error(f"unknown transport {transport}://")
    port = DEFAULT_PORTS[transport] if (transport != TRANSPORT_DNS or dns_port is None) else dns_port
    colon = text.rfind(":")
    if colon == len(text) - 1:
        raise tok.error(f"expected a port after the last colon in {tok.text!r}")
    # What follows the last colon is a port, unless it holds the mask of an IPv6 CIDR key
    # (fd00::/64): `.:53x` is a port typo, not a zone named ".:53x".
    if colon != -1 and "/" not in text[colon + 1:]:
        digits = text[colon + 1:]
        if not (digits.isascii() and digits.isdigit()):
            raise tok.error(f"invalid port {digits!r} in server key {tok.text!r}")
        port = int(digits)
        text = text[:colon]
        if not 0 < port < 65536:
            raise tok.error(f"port {port} is out of range")
    if not text:
        raise tok.error(f"no zone in server key {tok.text!r}")
    if "/" in text:
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError as exc:
            raise tok.error(f"invalid reverse zone {text!r}: {exc}") from exc
        return [ZoneAddr(transport, z, port) for z in reverse_zones(network)]
    try:
        zone = normalize_zone(text)
    except ValueError as exc:
        raise tok.error(str(exc)) from exc
    return [ZoneAddr(transport, zone, port)]


def parse_keys(keys: tuple[Token, ...], dns_port: int | None = None) -> list[tuple[ZoneAddr, Token]]:
    """Parse every key of a server block, each paired with the token it came from."""
    out: list[tuple[ZoneAddr, Token]] = []
    for tok in keys:
        out.extend((za, tok) for za in parse_key(tok, dns_port))
    return out


def check_no_duplicates(blocks: list[list[tuple[ZoneAddr, Token]]]) -> None:
    """The same transport://zone:port in two places is an error naming the second place."""
    seen: dict[ZoneAddr, Token] = {}
    for keys in blocks:
        for za, tok in keys:
            if za in seen:
                first = seen[za]
                raise ConfigError(f"zone {za} is defined more than once (first at {first.where})",
                                  tok.file, tok.line)
            seen[za] = tok


__all__ = ["ZoneAddr", "parse_key", "parse_keys", "check_no_duplicates", "normalize_zone",
           "reverse_zones", "TRANSPORT_DNS", "TRANSPORT_TLS", "TRANSPORT_HTTPS", "ConfigError"]
