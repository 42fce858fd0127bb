"""Merging the answers several clusters gave to one question. Pure: no I/O.

Each cluster was asked the question with the merged zone replaced by its own zone
(``web.ns.svc.cluster.all`` -> ``web.ns.svc.cluster.local``); every name in its answer that lies
in its zone is written back into the merged zone, so that SRV targets, CNAME chains and the
additional records stay usable through the merged zone.

The rules, in order:

* only clusters that answered NOERROR or NXDOMAIN count; timeouts, SERVFAIL, REFUSED and
  unparsable answers are left out (the caller counts them);
* none counts: SERVFAIL;
* policy local-first and the local cluster has data: the local cluster's answer alone;
* any cluster has data: the union, each record once, each RRset with the smallest TTL any
  cluster gave it;
* the name exists somewhere (a NOERROR without data): NODATA, with a SOA;
* every counted cluster said NXDOMAIN: NXDOMAIN, with a SOA.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset

from interkube.dns.message import make_response

#: Rdata fields that hold a domain name, by record type.
_NAME_FIELDS = {
    dns.rdatatype.CNAME: ("target",),
    dns.rdatatype.DNAME: ("target",),
    dns.rdatatype.NS: ("target",),
    dns.rdatatype.PTR: ("target",),
    dns.rdatatype.SRV: ("target",),
    dns.rdatatype.MX: ("exchange",),
    dns.rdatatype.SOA: ("mname", "rname"),
}
#: The SOA used when no cluster's negative answer carried one.
_FALLBACK_SOA_TTL = 5


@dataclass(frozen=True)
class ClusterReply:
    """What one cluster said: its zone and the parsed response, or why there is none."""

    cluster: str
    zone: dns.name.Name
    response: dns.message.Message | None
    failure: str | None = None

    @property
    def counts(self) -> bool:
        return self.response is not None and self.response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)

    @property
    def has_data(self) -> bool:
        return self.counts and self.response.rcode() == dns.rcode.NOERROR and bool(self.response.answer)  # type: ignore[union-attr]


def to_zone(name: dns.name.Name, src: dns.name.Name, dst: dns.name.Name) -> dns.name.Name:
    """``name`` moved from zone ``src`` to zone ``dst`` (unchanged when outside ``src``)."""
    if name.is_subdomain(src):
        return name.relativize(src).derelativize(dst)
    return name


class _Union:
    """RRsets keyed by (owner, type, class); each rdata once; the smallest TTL wins."""

    def __init__(self) -> None:
        self.sets: dict[tuple[dns.name.Name, int, int], dns.rrset.RRset] = {}

    def add(self, rrset: dns.rrset.RRset, owner: dns.name.Name, src: dns.name.Name,
            dst: dns.name.Name) -> None:
        key = (owner, rrset.rdtype, rrset.rdclass)
        merged = self.sets.get(key)
        if merged is None:
            merged = self.sets[key] = dns.rrset.RRset(owner, rrset.rdclass, rrset.rdtype)
            merged.ttl = rrset.ttl
        fields = _NAME_FIELDS.get(rrset.rdtype, ())
        for rd in rrset:
            if fields:
                rd = rd.replace(**{f: to_zone(getattr(rd, f), src, dst) for f in fields})
            merged.add(rd, rrset.ttl)  # add() keeps the smaller TTL and drops duplicates

    def rrsets(self) -> list[dns.rrset.RRset]:
        return list(self.sets.values())


def _owner(name: dns.name.Name, reply: ClusterReply, asked: dns.name.Name, qname: dns.name.Name,
           merged_zone: dns.name.Name) -> dns.name.Name:
    """An answer's owner in the merged zone; the question's own name keeps the client's case."""
    if name == asked:
        return qname
    return to_zone(name, reply.zone, merged_zone)


def combine(query: dns.message.Message, replies: list[ClusterReply], merged_zone: dns.name.Name,
            local: str | None = None, local_first: bool = False) -> dns.message.Message:
    """The merged response to ``query`` (see the module docstring for the rules)."""
    response = make_response(query, authoritative=True)
    qname = query.question[0].name
    counted = [r for r in replies if r.counts]
    if not counted:
        response.set_rcode(dns.rcode.SERVFAIL)
        response.flags &= ~dns.flags.AA
        return response
    with_data = [r for r in counted if r.has_data]
    if local_first and local is not None:
        mine = [r for r in with_data if r.cluster == local]
        if mine:
            with_data = mine
    if with_data:
        answer, additional = _Union(), _Union()
        for reply in with_data:
            asked = to_zone(qname, merged_zone, reply.zone)
            for rrset in reply.response.answer:  # type: ignore[union-attr]
                answer.add(rrset, _owner(rrset.name, reply, asked, qname, merged_zone), reply.zone, merged_zone)
            for rrset in reply.response.additional:  # type: ignore[union-attr]
                if rrset.rdtype == dns.rdatatype.OPT:
                    continue
                additional.add(rrset, _owner(rrset.name, reply, asked, qname, merged_zone), reply.zone, merged_zone)
        response.answer = answer.rrsets()
        response.additional = additional.rrsets()
        return response
    exists = any(r.response.rcode() == dns.rcode.NOERROR for r in counted)  # type: ignore[union-attr]
    if not exists:
        response.set_rcode(dns.rcode.NXDOMAIN)
    response.authority = [_soa(counted, merged_zone, local)]
    return response


def _soa(replies: list[ClusterReply], merged_zone: dns.name.Name, local: str | None) -> dns.rrset.RRset:
    """The SOA for a negative answer: the local cluster's (else the first one's) moved into the
    merged zone, with the smallest TTL and the smallest MINIMUM any cluster gave, so that no
    resolver caches the merged denial longer than a cluster allowed."""
    ordered = sorted(replies, key=lambda r: r.cluster != local)
    soas = [(r, rrset) for r in ordered for rrset in r.response.authority  # type: ignore[union-attr]
            if rrset.rdtype == dns.rdatatype.SOA]
    if not soas:
        rd = dns.rdtypes.ANY.SOA.SOA(dns.rdataclass.IN, dns.rdatatype.SOA,
                                     dns.name.Name((b"ns", b"dns")).concatenate(merged_zone),
                                     dns.name.Name((b"hostmaster",)).concatenate(merged_zone),
                                     1, 7200, 1800, 86400, _FALLBACK_SOA_TTL)
        out = dns.rrset.RRset(merged_zone, dns.rdataclass.IN, dns.rdatatype.SOA)
        out.add(rd, _FALLBACK_SOA_TTL)
        return out
    reply, first = soas[0]
    union = _Union()
    union.add(first, merged_zone, reply.zone, merged_zone)
    merged = union.rrsets()[0]
    minimum = min(rd.minimum for _, rrset in soas for rd in rrset)
    out = dns.rrset.RRset(merged.name, merged.rdclass, merged.rdtype)
    out.add(merged[0].replace(minimum=minimum), min(rrset.ttl for _, rrset in soas))
    return out
