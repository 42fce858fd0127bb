"""The wire merge (combine.py) against the dnspython implementation it replaced.

``reference_combine`` below is the previous combine(), kept verbatim as the oracle: every
response the wire merge builds must parse with dnspython and equal what it produced for the
same inputs (flags, rcode, question, EDNS, and every section with names, letter case and
TTLs). Then the rules one by one, and the per-cluster queries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interkube.dns.message import make_response
from interkube.dns.wire import parse_query
from interkube.plugins.merge.combine import Answer, ClusterReply, cluster_queries, combine, merge_answers

# -- the previous implementation (dnspython), as the oracle -----------------------------------

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
class OldReply:
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


def _owner(name: dns.name.Name, reply: OldReply, asked: dns.name.Name, qname: dns.name.Name,
           merged_zone: dns.name.Name) -> dns.name.Name:
    """An answer's owner in the merged zone; the question's own name keeps the client's case."""
    if name == asked:
        return qname
    return to_zone(name, reply.zone, merged_zone)


def reference_combine(query: dns.message.Message, replies: list[OldReply], merged_zone: dns.name.Name,
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


def _soa(replies: list[OldReply], merged_zone: dns.name.Name, local: str | None) -> dns.rrset.RRset:
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


# -- the comparison ---------------------------------------------------------------------------

MERGED = dns.name.from_text("cluster.all.")


def section(msg: dns.message.Message, name: str) -> list[tuple[str, int, int, int, list[str]]]:
    """A section as comparable data: owner (with its case), class, type, TTL, rdatas in order."""
    return [(rrset.name.to_text(), rrset.rdclass, rrset.rdtype, rrset.ttl, [rd.to_text() for rd in rrset])
            for rrset in getattr(msg, name)]


def assert_same(new_wire: bytes, old: dns.message.Message) -> dns.message.Message:
    new = dns.message.from_wire(new_wire)
    assert (new.id, new.flags, new.rcode()) == (old.id, old.flags, old.rcode())
    assert [q.name.to_text() for q in new.question] == [q.name.to_text() for q in old.question]
    assert new.question == old.question
    assert (new.edns, new.ednsflags, new.payload, new.options) == (old.edns, old.ednsflags, old.payload, old.options)
    for name in ("answer", "authority", "additional"):
        assert section(new, name) == section(old, name), name
    return new


#: Each cluster's reply to the merged query: (cluster, its zone, its response or None for a timeout).
Replies = list[tuple[str, str, dns.message.Message | None]]


def both(query: dns.message.Message, replies: Replies,
         local: str | None = None, local_first: bool = False) -> dns.message.Message:
    """Merge with the wire implementation and the reference; check they agree; the result.

    The wire merge runs twice: with each cluster's question given, as the handler reads the
    answers (the plain ones then merged from their bytes: read_plain_answer, _plain_union), and
    without, every answer read whole; both must give the same bytes."""
    parsed = parse_query(query.to_wire())
    assert parsed is not None
    zones = [dns.name.from_text(z).to_wire() for _, z, _ in replies]
    questions = [q for _, q in cluster_queries(parsed, len(MERGED.to_wire()), [(z, z.lower()) for z in zones])]
    merged = {}
    for asking in (True, False):
        new_replies = [
            ClusterReply(c, zw.lower(), None, "timeout") if m is None
            else ClusterReply.read(c, zw.lower(), m.to_wire(), question if asking else b"")
            for (c, _, m), zw, question in zip(replies, zones, questions, strict=True)]
        merged[asking] = combine(parsed, new_replies, MERGED.to_wire(), local, local_first)
    assert merged[True] == merged[False]
    # The callback path's merge of the answers as they came (bytes; a timeout as its reply): the
    # same bytes, and the replies read whenever one is to be counted as left out (with the reason).
    answers: list[Answer] = [ClusterReply(c, zw.lower(), None, "timeout") if m is None else m.to_wire()
                             for (c, _, m), zw in zip(replies, zones, strict=True)]
    via_answers, read = merge_answers(parsed, answers, [(b"", question) for question in questions],
                                      [(c, zw.lower(), None) for (c, _, _), zw in zip(replies, zones, strict=True)],
                                      MERGED.to_wire(), local, local_first)
    assert via_answers == merged[True]
    if read is None:
        assert all(r.counts for r in new_replies)
    else:
        assert [(r.cluster, r.rcode, r.failure) for r in read] == [(r.cluster, r.rcode, r.failure) for r in new_replies]
    old_replies = [OldReply(c, dns.name.from_text(z), None if m is None else dns.message.from_wire(m.to_wire()),
                            None if m is not None else "timeout") for c, z, m in replies]
    old = reference_combine(query, old_replies, MERGED, local, local_first)
    return assert_same(merged[True], old)


def response(asked: str, rdtype: str = "A", rcode: int = dns.rcode.NOERROR,
             answer: tuple[str, ...] = (), authority: tuple[str, ...] = (), additional: tuple[str, ...] = (),
             edns: bool = False) -> dns.message.Message:
    """A cluster's response; records as zone-file lines (``name ttl type rdata``)."""
    m = dns.message.make_response(dns.message.make_query(asked, rdtype, use_edns=0 if edns else False))
    m.set_rcode(rcode)
    for target, lines in ((m.answer, answer), (m.authority, authority), (m.additional, additional)):
        for line in lines:
            name, ttl, rtype, rdata = line.split(None, 3)
            target.append(dns.rrset.from_text(name, int(ttl), "IN", rtype, rdata))
    return m


# -- hypothesis: random clusters' answers, old and new agree -----------------------------------

ZONES = ["cluster.local.", "Cluster.Local.", "east.example."]
LABELS = st.sampled_from(["web", "Web", "WEB", "web-0", "Web-0", "shop", "svc", "x"])
RELATIVE = st.lists(LABELS, min_size=1, max_size=3).map(".".join)
CLUSTERS = ["east", "west", "central", "north"]


def name_in(zone: str) -> st.SearchStrategy[str]:
    """A name in ``zone`` (in any case), or now and then one outside every cluster's zone."""
    return st.one_of(
        RELATIVE.map(lambda rel: f"{rel}.{zone}"),
        st.sampled_from([zone, zone.upper(), "outside.example.org.", "x.xcluster.local."]))


def rdata(rtype: str, zone: str) -> st.SearchStrategy[str]:
    names = name_in(zone)
    return {
        "A": st.sampled_from(["10.0.0.1", "10.0.0.2", "10.1.0.1"]),
        "AAAA": st.sampled_from(["fd00::1", "fd00::2"]),
        "TXT": st.sampled_from(['"a"', '"b"']),
        "CNAME": names, "NS": names, "PTR": names, "DNAME": names,
        "MX": st.builds(lambda p, n: f"{p} {n}", st.integers(0, 3), names),
        "SRV": st.builds(lambda p, n: f"0 50 {p} {n}", st.sampled_from([80, 443]), names),
        "SOA": st.builds(lambda m, r, mi: f"{m} {r} 1 7200 1800 86400 {mi}", names, names, st.integers(0, 60)),
    }[rtype]


def records(zone: str, asked: str, types: list[str]) -> st.SearchStrategy[list[str]]:
    owners = st.one_of(st.just(asked), st.just(asked.upper()), name_in(zone))
    record = st.sampled_from(types).flatmap(lambda t: st.builds(
        lambda o, ttl, rd: f"{o} {ttl} {t} {rd}", owners, st.integers(0, 90), rdata(t, zone)))
    return st.lists(record, max_size=4)


def cluster_replies(draw: st.DrawFn, rel: str, reply: Callable[[str, str], dns.message.Message]) -> Replies:
    """One to four clusters' replies to the name ``rel`` in their zone: ``reply(asked, zone)``,
    or now and then a timeout."""
    replies: Replies = []
    for cluster in CLUSTERS[:draw(st.integers(1, 4))]:
        zone = draw(st.sampled_from(ZONES))
        replies.append((cluster, zone, None if draw(st.integers(0, 9)) == 0 else reply(f"{rel}.{zone}", zone)))
    return replies


@st.composite
def scenario(draw: st.DrawFn) -> tuple[dns.message.Message, Replies, str | None, bool]:
    rel = draw(RELATIVE)
    qtype = draw(st.sampled_from(["A", "AAAA", "SRV", "TXT", "SOA", "CNAME"]))
    edns = draw(st.booleans())
    query = dns.message.make_query(f"{rel}.{draw(st.sampled_from(['cluster.all.', 'CLUSTER.all.']))}", qtype,
                                   use_edns=0 if edns else False, want_dnssec=draw(st.booleans()))
    query.flags = draw(st.sampled_from([0, dns.flags.RD, dns.flags.RD | dns.flags.CD, dns.flags.AD]))

    def reply(asked: str, zone: str) -> dns.message.Message:
        rcode = draw(st.sampled_from([dns.rcode.NOERROR, dns.rcode.NOERROR, dns.rcode.NXDOMAIN,
                                      dns.rcode.SERVFAIL, dns.rcode.REFUSED]))
        answer = draw(records(zone, asked, ["A", "AAAA", "CNAME", "SRV", "TXT", "MX", "DNAME", "PTR", "NS", "SOA"]))
        authority = draw(records(zone, asked, ["SOA", "NS"]))
        additional = draw(records(zone, asked, ["A", "AAAA", "TXT"]))
        return response(asked, qtype, rcode, tuple(answer), tuple(authority), tuple(additional), draw(st.booleans()))

    replies = cluster_replies(draw, rel, reply)
    local = draw(st.sampled_from([None, *CLUSTERS]))
    return query, replies, local, draw(st.booleans())


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenario())
def test_the_wire_merge_equals_the_dnspython_merge(case) -> None:  # type: ignore[no-untyped-def]
    query, replies, local, local_first = case
    both(query, replies, local, local_first)


def own_records(asked: str, zone: str) -> st.SearchStrategy[str]:
    """A, AAAA and TXT records of the name ``asked``, in either case."""
    owners = st.sampled_from([asked, asked.upper()])
    return st.sampled_from(["A", "AAAA", "TXT"]).flatmap(lambda t: st.builds(
        lambda o, ttl, rd: f"{o} {ttl} {t} {rd}", owners, st.integers(0, 90), rdata(t, zone)))


@st.composite
def plain_scenario(draw: st.DrawFn) -> tuple[dns.message.Message, Replies, str | None, bool]:
    """Every cluster answers with the question's own records only (what read_plain_answer
    takes), or times out, or fails."""
    rel = draw(RELATIVE)
    qtype = draw(st.sampled_from(["A", "AAAA", "TXT"]))
    query = dns.message.make_query(f"{rel}.cluster.all.", qtype, use_edns=0 if draw(st.booleans()) else False)

    def reply(asked: str, zone: str) -> dns.message.Message:
        rcode = draw(st.sampled_from([dns.rcode.NOERROR] * 4 + [dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL]))
        answer = draw(st.lists(own_records(asked, zone), max_size=4))
        return response(asked, qtype, rcode, tuple(answer), edns=draw(st.booleans()))

    replies = cluster_replies(draw, rel, reply)
    return query, replies, draw(st.sampled_from([None, *CLUSTERS])), draw(st.booleans())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(plain_scenario())
def test_plain_answers_merge_as_answers_read_whole(case) -> None:  # type: ignore[no-untyped-def]
    query, replies, local, local_first = case
    parsed = parse_query(query.to_wire())
    assert parsed is not None
    for (c, z, m), (_, question) in zip(replies, cluster_queries(
            parsed, len(MERGED.to_wire()), [(dns.name.from_text(z).to_wire(),) * 2 for _, z, _ in replies]),
            strict=True):
        if m is not None:  # the scenario is what the plain reading is for: it must take it
            zone = dns.name.from_text(z).canonicalize().to_wire()
            assert ClusterReply.read(c, zone, m.to_wire(), question.lower()).plain is not None
    both(query, replies, local, local_first)


def test_a_plain_answer_merged_with_one_read_whole() -> None:
    cname = "www.shop.svc.cluster.local."
    plain = response(LOCAL, answer=(f"{LOCAL} 30 A 10.1.0.10",))
    whole = response(LOCAL, answer=(f"{LOCAL} 10 CNAME {cname}", f"{cname} 10 A 10.2.0.10"))
    for first, second in ((plain, whole), (whole, plain)):
        out = both(dns.message.make_query(Q, "A"),
                   [("east", "cluster.local.", first), ("west", "cluster.local.", second)])
        assert {rrset.rdtype for rrset in out.answer} == {dns.rdatatype.A, dns.rdatatype.CNAME}


# -- the rules, one by one --------------------------------------------------------------------

Q = "Web.Shop.svc.cluster.all."
LOCAL = "web.shop.svc.cluster.local."


def test_union_dedup_and_smallest_ttl() -> None:
    out = both(dns.message.make_query(Q, "A"), [
        ("east", "cluster.local.", response(LOCAL, answer=(f"{LOCAL} 30 A 10.1.0.10", f"{LOCAL} 30 A 10.0.0.1"))),
        ("west", "cluster.local.",
         response(LOCAL, answer=(f"{LOCAL.upper()} 10 A 10.0.0.1", f"{LOCAL} 10 A 10.2.0.10"))),
    ])
    assert section(out, "answer") == [(Q, 1, 1, 10, ["10.1.0.10", "10.0.0.1", "10.2.0.10"])]


@pytest.mark.parametrize("ttls", [(30, 20, 10), (10, 20, 30), (20, 5, 20)])
def test_one_address_per_cluster_is_one_rrset_with_the_smallest_ttl(ttls: tuple[int, int, int]) -> None:
    """The commonest merge (each cluster its one address, one cluster's the same as another's)."""
    addrs = ("10.1.0.10", "10.2.0.10", "10.1.0.10")
    out = both(dns.message.make_query(Q, "A", use_edns=0), [
        (cluster, "cluster.local.", response(LOCAL, answer=(f"{LOCAL} {ttl} A {addr}",), edns=True))
        for cluster, ttl, addr in zip(CLUSTERS[:3], ttls, addrs, strict=True)])
    assert section(out, "answer") == [(Q, 1, 1, min(ttls), ["10.1.0.10", "10.2.0.10"])]
    # An AAAA in one of them: two RRsets, each with its own TTL.
    out = both(dns.message.make_query(Q, "A"), [
        ("east", "cluster.local.", response(LOCAL, answer=(f"{LOCAL} {ttls[0]} A 10.1.0.10",))),
        ("west", "cluster.local.", response(LOCAL, answer=(f"{LOCAL} {ttls[1]} AAAA fd00::1",))),
        ("central", "cluster.local.", response(LOCAL, answer=(f"{LOCAL} {ttls[2]} A 10.3.0.10",)))])
    assert section(out, "answer") == [(Q, 1, 1, min(ttls[0], ttls[2]), ["10.1.0.10", "10.3.0.10"]),
                                      (Q, 1, 28, ttls[1], ["fd00::1"])]


@pytest.mark.parametrize(("rtype", "rdata", "moved"), [
    ("CNAME", "Web-0.web.shop.svc.Cluster.Local.", "Web-0.web.shop.svc.cluster.all."),
    ("NS", "ns.dns.cluster.local.", "ns.dns.cluster.all."),
    ("PTR", "web.shop.svc.cluster.local.", "web.shop.svc.cluster.all."),
    ("DNAME", "other.cluster.local.", "other.cluster.all."),
    ("MX", "10 mail.cluster.local.", "10 mail.cluster.all."),
    ("SRV", "0 50 80 web-0.web.shop.svc.cluster.local.", "0 50 80 web-0.web.shop.svc.cluster.all."),
    ("SOA", "ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5",
     "ns.dns.cluster.all. hostmaster.cluster.all. 1 7200 1800 86400 5"),
    ("CNAME", "web.xcluster.local.", "web.xcluster.local."),            # not in the zone
    ("SRV", "0 50 80 web.example.org.", "0 50 80 web.example.org."),     # outside: unchanged
])
def test_every_name_bearing_type_is_moved_into_the_merged_zone(rtype: str, rdata: str, moved: str) -> None:
    out = both(dns.message.make_query(Q, rtype), [
        ("east", "cluster.local.", response(LOCAL, rtype, answer=(f"{LOCAL} 30 {rtype} {rdata}",
                                                                  f"x.{LOCAL} 30 {rtype} {rdata}"))),
    ])
    assert section(out, "answer") == [(Q, 1, dns.rdatatype.from_text(rtype), 30, [moved]),
                                      ("x.web.shop.svc.cluster.all.", 1, dns.rdatatype.from_text(rtype), 30, [moved])]


def test_names_compare_case_insensitively_in_rdata_too() -> None:
    out = both(dns.message.make_query("_http._tcp.web.shop.svc.cluster.all.", "SRV"), [
        ("east", "cluster.local.", response("_http._tcp.web.shop.svc.cluster.local.", "SRV", answer=(
            "_http._tcp.web.shop.svc.cluster.local. 30 SRV 0 50 80 Web-0.web.shop.svc.cluster.local.",))),
        ("west", "cluster.local.", response("_http._tcp.web.shop.svc.cluster.local.", "SRV", answer=(
            "_HTTP._tcp.web.shop.svc.cluster.local. 20 SRV 0 50 80 web-0.WEB.shop.svc.cluster.local.",
            "_http._tcp.web.shop.svc.cluster.local. 20 SRV 0 50 81 web-0.web.shop.svc.cluster.local."))),
    ])
    ((_, _, _, ttl, rdatas),) = section(out, "answer")
    assert ttl == 20
    assert rdatas == ["0 50 80 Web-0.web.shop.svc.cluster.all.", "0 50 81 web-0.web.shop.svc.cluster.all."]


def test_a_cname_rrset_keeps_one_record() -> None:
    # Two clusters with different targets for one alias: one CNAME (the last cluster's), as
    # dnspython's RRset kept it; the smallest TTL.
    out = both(dns.message.make_query("alias.cluster.all.", "CNAME"), [
        ("east", "cluster.local.",
         response("alias.cluster.local.", "CNAME", answer=("alias.cluster.local. 30 CNAME a.example.",))),
        ("west", "cluster.local.",
         response("alias.cluster.local.", "CNAME", answer=("alias.cluster.local. 20 CNAME b.example.",))),
    ])
    assert section(out, "answer") == [("alias.cluster.all.", 1, 5, 20, ["b.example."])]


def test_negative_answers_carry_the_smallest_soa_ttl_and_minimum_local_first() -> None:
    soa = "cluster.local. {ttl} SOA ns.{who}.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 {minimum}"
    replies = [
        ("east", "cluster.local.",
         response(LOCAL, rcode=dns.rcode.NXDOMAIN, authority=(soa.format(ttl=30, who="east", minimum=20),))),
        ("west", "cluster.local.", response(LOCAL, authority=(soa.format(ttl=60, who="west", minimum=10),))),
    ]
    nodata = both(dns.message.make_query(Q, "A"), replies, local="west")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert section(nodata, "authority") == [
        ("cluster.all.", 1, 6, 30, ["ns.west.cluster.all. hostmaster.cluster.all. 1 7200 1800 86400 10"])]
    first = both(dns.message.make_query(Q, "A"), replies)
    assert section(first, "authority")[0][4] == ["ns.east.cluster.all. hostmaster.cluster.all. 1 7200 1800 86400 10"]
    nx = both(dns.message.make_query(Q, "A"), [replies[0], ("west", "cluster.local.", None)])
    assert nx.rcode() == dns.rcode.NXDOMAIN and section(nx, "authority")[0][3:] == (
        30, ["ns.east.cluster.all. hostmaster.cluster.all. 1 7200 1800 86400 20"])
    # No SOA anywhere: a stand-in one, with a short negative TTL.
    bare = both(dns.message.make_query(Q, "A"), [("east", "cluster.local.", response(LOCAL, rcode=dns.rcode.NXDOMAIN))])
    assert section(bare, "authority") == [
        ("cluster.all.", 1, 6, 5, ["ns.dns.cluster.all. hostmaster.cluster.all. 1 7200 1800 86400 5"])]


def test_rcodes_flags_and_edns() -> None:
    query = dns.message.make_query(Q, "A", use_edns=0, payload=4096, want_dnssec=True)
    query.flags |= dns.flags.CD
    failed = both(query, [("east", "cluster.local.", response(LOCAL, rcode=dns.rcode.SERVFAIL)),
                          ("west", "cluster.local.", None)])
    assert failed.rcode() == dns.rcode.SERVFAIL and not failed.flags & dns.flags.AA
    assert failed.edns == 0 and failed.payload == 1232 and failed.ednsflags & dns.flags.DO
    ok = both(query, [("east", "cluster.local.", response(LOCAL, answer=(f"{LOCAL} 5 A 10.0.0.1",), edns=True))])
    assert ok.flags & dns.flags.AA and ok.flags & dns.flags.RD and not ok.flags & dns.flags.CD
    # The OPT record of a cluster's response is not copied into the merged additional section.
    assert len(ok.additional) == 0 and ok.edns == 0


def test_local_first() -> None:
    replies = [("east", "cluster.local.", response(LOCAL, answer=(f"{LOCAL} 5 A 10.1.0.1",))),
               ("west", "cluster.local.", response(LOCAL, answer=(f"{LOCAL} 5 A 10.2.0.1",)))]
    query = dns.message.make_query(Q, "A")
    assert section(both(query, replies, "west", True), "answer")[0][4] == ["10.2.0.1"]
    assert section(both(query, replies, "west", False), "answer")[0][4] == ["10.1.0.1", "10.2.0.1"]


def test_the_question_name_is_a_pointer_and_keeps_the_client_case() -> None:
    parsed = parse_query(dns.message.make_query(Q, "A").to_wire())
    assert parsed is not None
    reply = ClusterReply.read("east", b"\x07cluster\x05local\x00",
                              response(LOCAL.upper(), answer=(f"{LOCAL.upper()} 5 A 10.1.0.1",)).to_wire())
    out = combine(parsed, [reply], MERGED.to_wire())
    end = parsed.question_end
    assert out[end:end + 2] == b"\xc0\x0c" and out[12:end] == parsed.wire[12:end]
    assert dns.message.from_wire(out).answer[0].name.to_text() == Q


def test_malformed_answers_are_failures() -> None:
    zone = b"\x07cluster\x05local\x00"
    good = response(LOCAL, answer=(f"{LOCAL} 5 A 10.1.0.1",)).to_wire()
    question = b"\x03web\x04shop\x03svc" + zone + b"\x00\x01\x00\x01"
    for bad in (good[:-1], good + b"\x00", good[:12 + 3] + b"\xc0\xff" + good[17:], b"\x00" * 5):
        for asked in (b"", question):
            reply = ClusterReply.read("east", zone, bad, asked)
            assert reply.message is None and reply.failure is not None and reply.failure.startswith("malformed")
            assert not reply.counts and reply.rcode == -1


# -- the per-cluster queries ------------------------------------------------------------------


@pytest.mark.parametrize("edns", [False, True])
def test_cluster_queries_are_the_client_query_in_each_zone(edns: bool) -> None:
    options = [dns.edns.GenericOption(10, b"12345678")] if edns else []  # a client cookie
    query = dns.message.make_query("Web.Shop.svc.Cluster.ALL.", "A", use_edns=0 if edns else False,
                                   payload=4096, want_dnssec=edns, options=options)
    query.flags |= dns.flags.CD | dns.flags.AD
    parsed = parse_query(query.to_wire())
    assert parsed is not None
    zones = [(z.to_wire(), z.canonicalize().to_wire()) for z in
             (dns.name.from_text("cluster.local."), dns.name.from_text("East.Example."))]
    for (wire, question), expected in zip(cluster_queries(parsed, len(MERGED.to_wire()), zones),
                                          ("Web.Shop.svc.cluster.local.", "Web.Shop.svc.East.Example."), strict=True):
        sent = dns.message.from_wire(wire)
        # What the dnspython implementation sent: flags, the question moved, EDNS without options.
        old = dns.message.Message(id=sent.id)
        old.flags = query.flags
        old.question = [dns.rrset.RRset(dns.name.from_text(expected), 1, 1)]
        if edns:
            old.use_edns(0, query.ednsflags, query.payload)
        assert wire == old.to_wire()
        assert sent.question[0].name.to_text() == expected
        assert question == wire[12:12 + len(question)].lower() and len(question) == len(expected) + 1 + 4


def test_clusters_of_one_zone_are_sent_the_same_query() -> None:
    parsed = parse_query(dns.message.make_query("Web.Shop.svc.cluster.all.", "A", use_edns=0).to_wire())
    assert parsed is not None
    local, east = (dns.name.from_text(z).to_wire() for z in ("Cluster.Local.", "east.example."))
    zones = [(local, local.lower()), (local, local.lower()), (east, east), (local, local.lower())]
    each = [cluster_queries(parsed, len(MERGED.to_wire()), [zone])[0] for zone in zones]
    assert cluster_queries(parsed, len(MERGED.to_wire()), zones) == each
    assert each[0] == each[1] == each[3] != each[2]
