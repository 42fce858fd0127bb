"""One zone loaded from an RFC 1035 master file with dnspython, indexed for lookups. No I/O."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dns.exception
import dns.name
import dns.node
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.zone

from interkube.errors import InterkubeError

if TYPE_CHECKING:
    from interkube.plugins.file.negative import NegativeIndex


class ZoneFileInvalid(InterkubeError):
    """A zone file that cannot be served; the message names the file and, if known, its line."""


@dataclass(frozen=True)
class ZoneData:
    """A zone's records by owner name, and every name that exists in it."""

    origin: dns.name.Name
    nodes: Mapping[dns.name.Name, dns.node.Node]
    #: Owner names plus the empty non-terminals between them and the apex (RFC 8020 "exists").
    names: frozenset[dns.name.Name]
    soa: dns.rdataset.Rdataset
    ns: dns.rdataset.Rdataset | None

    @property
    def serial(self) -> int:
        return int(self.soa[0].serial)

    @functools.cached_property
    def canonical_order(self) -> tuple[dns.name.Name, ...]:
        """The owner names in DNSSEC canonical order (RFC 4034 6.1), for zone transfers (labels
        compared from the right as lower-case octets, in C: dnspython's own comparison of names
        costs three times as much)."""
        return tuple(sorted(self.nodes, key=lambda n: tuple(label.lower() for label in reversed(n.labels))))

    @functools.cached_property
    def negative(self) -> NegativeIndex:
        """The zone's names as wire bytes, which tell most negative answers without dnspython."""
        from interkube.plugins.file.negative import NegativeIndex  # (it reads a ZoneData: a cycle at import)

        return NegativeIndex(self)

    def rdataset(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.rdataset.Rdataset | None:
        node = self.nodes.get(name)
        return None if node is None else node.get_rdataset(dns.rdataclass.IN, rdtype)


def load_zone(text: str, origin: str, filename: str) -> ZoneData:
    """Parse zone-file text with ``origin`` as its $ORIGIN; raises ZoneFileInvalid."""
    try:
        # $INCLUDE is allowed, as in CoreDNS; dnspython opens relative paths from the cwd.
        zone = dns.zone.from_text(text, origin=origin, relativize=False, check_origin=False,
                                  filename=filename, allow_include=True)
    except dns.exception.DNSException as exc:
        # dnspython's syntax errors already read "FILE:LINE: what".
        text_ = str(exc)
        raise ZoneFileInvalid(text_ if text_.startswith(filename) else f"{filename}: {text_}") from exc
    apex_name = zone.origin  # always set: from_text was given the origin
    apex = zone.get_node(apex_name) if apex_name is not None else None
    soa = apex.get_rdataset(dns.rdataclass.IN, dns.rdatatype.SOA) if apex is not None else None
    if apex_name is None or apex is None or not soa:
        raise ZoneFileInvalid(f"{filename}: no SOA record for origin {origin}")
    names: set[dns.name.Name] = set()
    for name in zone.nodes:
        # Walk up to the apex: every ancestor of an owner name exists (maybe as an ENT).
        while name not in names and name != apex_name:
            names.add(name)
            name = name.parent()
    names.add(apex_name)
    ns = apex.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NS)
    data = ZoneData(apex_name, dict(zone.nodes), frozenset(names), soa, ns or None)
    # Sorted here, where a reload parses (off the event loop), not by the first transfer.
    _ = data.canonical_order
    _ = data.negative
    return data
