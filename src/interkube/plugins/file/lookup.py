"""Answering a question from one zone, after CoreDNS's plugin/file/lookup.go. Pure, no I/O.

The walk: from the apex down to the question name, a DNAME above the name rewrites it and a zone
cut (NS below the apex) turns the answer into a referral. Then the name itself (CNAME chains are
followed inside the zone), an empty non-terminal (NODATA), the closest encloser's wildcard, or
NXDOMAIN. Answers match CoreDNS 1.15's (tests/plugins/file/test_file_vs_coredns.py) except
where CoreDNS departs from the RFCs: an empty non-terminal exists (RFC 4592: no wildcard answers
for it), and so does an apex that holds only SOA and NS (NODATA, not NXDOMAIN).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import dns.name
import dns.node
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rrset

from interkube.plugins.file.zone import ZoneData

#: CoreDNS's maxChain: how far a CNAME chain is followed inside the zone (see _chase).
MAX_CHAIN = 8

IN = dns.rdataclass.IN
A, AAAA, CNAME, DNAME, DS, MX, NS, SOA, SRV = (
    dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.CNAME, dns.rdatatype.DNAME,
    dns.rdatatype.DS, dns.rdatatype.MX, dns.rdatatype.NS, dns.rdatatype.SOA, dns.rdatatype.SRV)
_WILD = dns.name.Name((b"*",))


class Outcome(enum.Enum):
    SUCCESS = "success"     # NOERROR; the answer may hold just a CNAME chain
    NODATA = "nodata"       # NOERROR, empty answer, SOA in authority
    NXDOMAIN = "nxdomain"   # SOA in authority
    REFERRAL = "referral"   # not authoritative: the child's NS in authority, glue in additional


@dataclass
class Result:
    outcome: Outcome
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)
    #: Made up for the question's name (from a wildcard, or a DNAME's CNAME): any client can
    #: ask for one per name.
    synthesized: bool = False


def rrset(name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> dns.rrset.RRset:
    """``rdataset`` owned by ``name`` (how wildcards take the question's name)."""
    out = dns.rrset.RRset(name, rdataset.rdclass, rdataset.rdtype, rdataset.covers)
    out.update(rdataset)  # type: ignore[no-untyped-call]  # unannotated in dnspython
    return out


def lookup(z: ZoneData, qname: dns.name.Name, rdtype: int) -> Result:
    """The answer to ``qname``/``rdtype`` (IN) from zone ``z``; ``qname`` must be inside it."""
    qtype = dns.rdatatype.RdataType.make(rdtype)
    origin = z.origin
    if qname == origin:
        if qtype == SOA:
            return Result(Outcome.SUCCESS, [rrset(origin, z.soa)], _apex_ns(z))
        if qtype == NS and z.ns:
            return Result(Outcome.SUCCESS, [rrset(origin, z.ns)], [], _glue(z, origin, z.ns))

    for name in _path(origin, qname):
        node = z.nodes.get(name)
        if node is None:
            continue
        dname = node.get_rdataset(IN, DNAME)
        if dname and name != qname:
            result = _dname(z, qname, name, dname, qtype)
            if result is not None:
                return result
        cut = node.get_rdataset(IN, NS) if name != origin else None
        if cut:
            if qtype == DS and name == qname:
                continue  # DS lives on the parent side of the cut
            return Result(Outcome.REFERRAL, [], [rrset(name, cut)], _glue(z, name, cut))

    node = z.nodes.get(qname)
    if node is not None:
        return _from_node(z, qname, node, qtype)
    if qname in z.names:
        return _nodata(z)  # an empty non-terminal
    wild = _wildcard(z, qname)
    if wild is not None:
        result = _from_node(z, qname, wild, qtype)
        result.synthesized = True
        return result
    return Result(Outcome.NXDOMAIN, [], [rrset(origin, z.soa)])


def _path(origin: dns.name.Name, qname: dns.name.Name) -> list[dns.name.Name]:
    """The apex, then each name one label longer, down to ``qname``."""
    out = [qname]
    name = qname
    while name != origin:
        name = name.parent()
        out.append(name)
    out.reverse()
    return out


def _apex_ns(z: ZoneData) -> list[dns.rrset.RRset]:
    return [rrset(z.origin, z.ns)] if z.ns else []


def _nodata(z: ZoneData) -> Result:
    return Result(Outcome.NODATA, [], [rrset(z.origin, z.soa)])


def _from_node(z: ZoneData, qname: dns.name.Name, node: dns.node.Node, qtype: dns.rdatatype.RdataType) -> Result:
    """The answer at an existing node (or the wildcard node standing in for ``qname``)."""
    if qtype != CNAME:
        cname = node.get_rdataset(IN, CNAME)
        if cname:
            return _chase(z, [rrset(qname, cname)], cname, qtype)
    found = node.get_rdataset(IN, qtype)
    if not found:
        return _nodata(z)
    return Result(Outcome.SUCCESS, [rrset(qname, found)], _apex_ns(z), _targets(z, found))


def _chase(z: ZoneData, answer: list[dns.rrset.RRset], cname: dns.rdataset.Rdataset,
           qtype: dns.rdatatype.RdataType) -> Result:
    """Follow a CNAME chain inside the zone, adding the final name's records of the asked type.

    A target outside the zone (or missing from it) ends the answer at its CNAME: this server
    does not resolve other names on the client's behalf. As in CoreDNS, at most MAX_CHAIN + 1
    CNAMEs are followed after the first; a loop stops where it closes.
    """
    seen = {answer[-1].name}
    target = cname[0].target
    hops = 0
    while hops <= MAX_CHAIN:
        node = z.nodes.get(target)
        if node is None or target in seen or not target.is_subdomain(z.origin):
            break
        seen.add(target)
        nxt = node.get_rdataset(IN, CNAME)
        if not nxt:
            final = node.get_rdataset(IN, qtype)
            if final:
                answer.append(rrset(target, final))
            break
        answer.append(rrset(target, nxt))
        target = nxt[0].target
        hops += 1
    return Result(Outcome.SUCCESS, answer, _apex_ns(z))


def _dname(z: ZoneData, qname: dns.name.Name, owner: dns.name.Name,
           dname: dns.rdataset.Rdataset, qtype: dns.rdatatype.RdataType) -> Result | None:
    """RFC 6672: the DNAME, a CNAME synthesized from it, and that CNAME followed in the zone."""
    try:
        new = qname.relativize(owner).derelativize(dname[0].target)
    except dns.name.NameTooLong:
        return None  # CoreDNS then carries on with the ordinary lookup
    synth = dns.rdataset.Rdataset(IN, CNAME)
    cname = dns.rdtypes.ANY.CNAME.CNAME(IN, CNAME, new)  # type: ignore[no-untyped-call]  # unannotated in dnspython
    synth.add(cname, dname.ttl)
    result = _chase(z, [rrset(owner, dname), rrset(qname, synth)], synth, qtype)
    result.synthesized = True
    return result


def _wildcard(z: ZoneData, qname: dns.name.Name) -> dns.node.Node | None:
    """The wildcard at the closest encloser of a name that does not exist (RFC 4592)."""
    encloser = qname.parent()
    while encloser not in z.names:
        encloser = encloser.parent()
    return z.nodes.get(_WILD.concatenate(encloser))


def _addresses(z: ZoneData, names: list[dns.name.Name]) -> list[dns.rrset.RRset]:
    """A then AAAA of each distinct name that has them in the zone, in order."""
    out = []
    for name in dict.fromkeys(names):
        for rdtype in (A, AAAA):
            found = z.rdataset(name, rdtype)
            if found:
                out.append(rrset(name, found))
    return out


def _glue(z: ZoneData, owner: dns.name.Name, ns: dns.rdataset.Rdataset) -> list[dns.rrset.RRset]:
    """Addresses of the name servers that lie below ``owner`` (as CoreDNS's Glue)."""
    return _addresses(z, [r.target for r in ns if r.target.is_subdomain(owner)])


def _targets(z: ZoneData, found: dns.rdataset.Rdataset) -> list[dns.rrset.RRset]:
    """Additional-section addresses for SRV and MX targets inside the zone."""
    if found.rdtype == SRV:
        names = [r.target for r in found]
    elif found.rdtype == MX:
        names = [r.exchange for r in found]
    else:
        return []
    return _addresses(z, [n for n in names if n.is_subdomain(z.origin)])
