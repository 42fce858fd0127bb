"""hosts(5) data: lines of ``ADDRESS NAME [ALIASES...]`` turned into lookup tables. No I/O."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TypeVar

import dns.exception
import dns.name
import dns.reversename

from interkube.dns.names import ZoneSet, to_wire

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_WILD = dns.name.Name((b"*",))


def parse_address(text: str) -> Address | None:
    """The address at the start of a hosts line, or None when it is not one."""
    # An IPv6 zone index (fe80::1%eth0) means nothing in DNS; CoreDNS drops it too.
    text = text.split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # as Go's To4(), which CoreDNS uses: ::ffff:a.b.c.d is IPv4
    return ip


def parse_name(text: str) -> dns.name.Name | None:
    """A host name, fully qualified and lower-cased, or None when it is not a valid name."""
    try:
        return dns.name.from_text(text).canonicalize()
    except dns.exception.DNSException:
        return None


def is_wildcard(name: dns.name.Name) -> bool:
    """A ``*.parent`` entry: it answers for every name one label below ``parent``."""
    return name.labels[:1] == (b"*",)


def wildcard_for(name: dns.name.Name) -> dns.name.Name | None:
    """The wildcard entry that would cover ``name`` (one label more than its parent)."""
    if len(name.labels) < 2:  # the root has no parent
        return None
    return _WILD.concatenate(name.parent())


def reverse_address(name: dns.name.Name) -> Address | None:
    """The address a full in-addr.arpa/ip6.arpa name stands for; None for any other name."""
    try:
        return ipaddress.ip_address(dns.reversename.to_address(name))
    except (dns.exception.DNSException, ValueError):
        return None


K = TypeVar("K")
V = TypeVar("V")


def _frozen(table: Mapping[K, Iterable[V]]) -> Mapping[K, tuple[V, ...]]:
    return MappingProxyType({k: tuple(v) for k, v in table.items()})


def _concat(first: Mapping[K, tuple[V, ...]], then: Mapping[K, tuple[V, ...]]) -> Mapping[K, tuple[V, ...]]:
    """Per key, ``first``'s values and then ``then``'s."""
    out: dict[K, list[V]] = {k: list(v) for k, v in first.items()}
    for k, v in then.items():
        out.setdefault(k, []).extend(v)
    return _frozen(out)


class HostsData:
    """One generation of entries: names to addresses, and addresses to names for PTR. (A plain
    class: a dataclass is a few exec'd functions at import, a millisecond of every start, issue 18.)"""

    def __init__(self, v4: Mapping[dns.name.Name, tuple[ipaddress.IPv4Address, ...]] | None = None,
                 v6: Mapping[dns.name.Name, tuple[ipaddress.IPv6Address, ...]] | None = None,
                 names: Mapping[Address, tuple[dns.name.Name, ...]] | None = None) -> None:
        self.v4: Mapping[dns.name.Name, tuple[ipaddress.IPv4Address, ...]] = {} if v4 is None else v4
        self.v6: Mapping[dns.name.Name, tuple[ipaddress.IPv6Address, ...]] = {} if v6 is None else v6
        self.names: Mapping[Address, tuple[dns.name.Name, ...]] = {} if names is None else names

    def __len__(self) -> int:
        """The number of entries, counted as CoreDNS's hosts_entries metric counts them."""
        return sum(len(v) for table in (self.v4, self.v6, self.names) for v in table.values())

    def lookup(self, name: dns.name.Name) -> tuple[tuple[ipaddress.IPv4Address, ...],
                                                   tuple[ipaddress.IPv6Address, ...]]:
        """The name's IPv4 and IPv6 addresses; per family, a wildcard entry stands in where
        the name has none of its own (as CoreDNS: `*.example.org` gives b.example.org an A
        record even when b.example.org has only an AAAA entry)."""
        v4 = self.v4.get(name, ())
        v6 = self.v6.get(name, ())
        if not (v4 and v6):
            wild = wildcard_for(name)
            if wild is not None:
                v4 = v4 or self.v4.get(wild, ())
                v6 = v6 or self.v6.get(wild, ())
        return v4, v6

    @functools.cached_property
    def wire_names(self) -> frozenset[bytes]:
        """The names with addresses (wildcard entries too), as lower-cased wire bytes: what
        tells a name with none without dnspython (see HostsHandler.wire_answer)."""
        return frozenset(to_wire(name) for table in (self.v4, self.v6) for name in table)

    def merged(self, later: HostsData) -> HostsData:
        """These entries, then ``later``'s (file first, inline second, as CoreDNS answers)."""
        return HostsData(_concat(self.v4, later.v4), _concat(self.v6, later.v6), _concat(self.names, later.names))


def parse_hosts(lines: Iterable[str], zones: ZoneSet, reverse: bool) -> HostsData:
    """Entries from hosts-file lines; names outside ``zones`` and malformed lines are skipped."""
    v4: dict[dns.name.Name, list[ipaddress.IPv4Address]] = {}
    v6: dict[dns.name.Name, list[ipaddress.IPv6Address]] = {}
    names: dict[Address, list[dns.name.Name]] = {}
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        ip = parse_address(fields[0])
        if ip is None:
            continue
        for text in fields[1:]:
            name = parse_name(text)
            if name is None or zones.match_text(name) is None:
                continue
            if isinstance(ip, ipaddress.IPv4Address):
                v4.setdefault(name, []).append(ip)
            else:
                v6.setdefault(name, []).append(ip)
            if reverse and not is_wildcard(name):  # a wildcard names no one host
                names.setdefault(ip, []).append(name)
    return HostsData(_frozen(v4), _frozen(v6), _frozen(names))
