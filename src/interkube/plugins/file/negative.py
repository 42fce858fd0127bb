"""Which questions a zone answers negatively, told from the question's wire bytes (no dnspython).

:func:`interkube.plugins.file.lookup.lookup` walks dnspython names; for a name nobody asked
before (a flood of random names) that walk and the dnspython answer cost ~100 µs a query. The
:class:`NegativeIndex` of a zone answers, for the lower-cased wire name of a question, whether
the lookup's outcome is NXDOMAIN or NODATA (then the handler writes the answer on the wire), or
that only the lookup can say (a name at or below a zone cut or a DNAME, a name with records of
the type asked or a CNAME, a wildcard that has them): it must never say negative where the
lookup answers with records (tests/plugins/file/test_negative_index.py compares them).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import dns.rdatatype

from interkube.dns.names import to_wire
from interkube.dns.negative import SoaRecord
from interkube.dns.wire import label_offsets
from interkube.plugins.file.lookup import rrset
from interkube.plugins.file.zone import ZoneData

CNAME, DNAME, NS = dns.rdatatype.CNAME, dns.rdatatype.DNAME, dns.rdatatype.NS
_WILD_LABEL = b"\x01*"


class Verdict(enum.Enum):
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"


class NegativeIndex:
    """A zone's names as lower-cased wire bytes: what the negative verdicts read."""

    __slots__ = ("apex", "types", "names", "redirects", "soa")

    def __init__(self, z: ZoneData) -> None:
        self.apex = to_wire(z.origin)
        #: Owner -> the types of its rdatasets.
        self.types: Mapping[bytes, frozenset[int]] = {
            to_wire(name): frozenset(int(rds.rdtype) for rds in node.rdatasets) for name, node in z.nodes.items()}
        #: Every name that exists (owners and the empty non-terminals above them).
        self.names = frozenset(to_wire(name) for name in z.names)
        #: Owners where the lookup leaves the zone's own data: a DNAME anywhere, NS below the apex.
        self.redirects = frozenset(owner for owner, types in self.types.items()
                                   if DNAME in types or (NS in types and owner != self.apex))
        #: The SOA as the lookup's negative outcomes put it in the authority section.
        self.soa = SoaRecord.from_rrset(rrset(z.origin, z.soa))

    def verdict(self, lname: bytes, qtype: int) -> Verdict | None:
        """NXDOMAIN or NODATA for the question (``lname`` in this zone, class IN), or None when
        only the lookup can tell."""
        offsets = label_offsets(lname)
        apex_at = len(lname) - len(self.apex)
        redirects = self.redirects
        if redirects:
            for off in offsets:
                if off > apex_at:
                    break
                if lname[off:] in redirects:
                    return None  # a referral, or a DNAME (at the name itself too: left to the lookup)
        types = self.types.get(lname)
        if types is None and lname not in self.names:
            # The closest encloser's wildcard stands in for the name (RFC 4592).
            names = self.names
            encloser = next(lname[off:] for off in offsets[1:] if lname[off:] in names)
            types = self.types.get(_WILD_LABEL + encloser)
            if types is None:
                return Verdict.NXDOMAIN
        if types is None:
            return Verdict.NODATA  # an empty non-terminal
        if qtype in types or CNAME in types:
            return None  # records (or a CNAME to follow): the lookup's
        return Verdict.NODATA
