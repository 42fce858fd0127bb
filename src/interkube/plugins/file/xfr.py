"""A file zone in transfer order, for the *transfer* plugin. Pure, no I/O.

As CoreDNS's file plugin sends it: the apex NS records right after the SOA, then every name in
DNSSEC canonical order (RFC 4034 6.1: the labels compared from the right, letters without case)
with all its records, the apex's other records first; the SOA is the transfer's first and last
record (see :class:`~interkube.plugin.transfer.ZoneCopy`). Within a name the types go in
numeric order (CoreDNS's follow its map's order, which varies).
"""

from __future__ import annotations

from collections.abc import Iterator

import dns.rdatatype

from interkube.plugin.transfer import Owned, ZoneCopy
from interkube.plugins.file.lookup import rrset
from interkube.plugins.file.zone import ZoneData

_APEX_FIRST = (dns.rdatatype.SOA, dns.rdatatype.NS)


def zone_copy(z: ZoneData) -> ZoneCopy:
    return ZoneCopy(rrset(z.origin, z.soa), _records(z))


def _records(z: ZoneData) -> Iterator[list[Owned]]:
    """One batch per name: its record sets (the apex's SOA and NS aside: those go first)."""
    if z.ns:
        yield [(z.origin, z.ns)]
    for name in z.canonical_order:
        node = z.nodes[name]
        at_apex = name == z.origin
        batch = [(name, found) for found in sorted(node.rdatasets, key=lambda r: (r.rdtype, r.covers))
                 if not (at_apex and found.rdtype in _APEX_FIRST)]
        if batch:
            yield batch
