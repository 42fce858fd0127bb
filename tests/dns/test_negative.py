"""Negative answers written on the wire (interkube.dns.negative) against dnspython's: the bytes
must be the very ones make_response() and render() give, for every query shape the fast path
takes (the templates built from either serve every later query with the same key)."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interkube.dns.message import make_response, render
from interkube.dns.negative import SoaRecord, negative_response
from interkube.dns.wire import Query, parse_query

ZONES = ("cluster.local.", "Example.org.", "a.b.c.d.e.example.", ".")
#: SOA names: in the zone (kubernetes' ns.dns), outside it sharing a suffix with each other,
#: the zone itself, the root, and one in an odd letter case.
SOA_NAMES = (("ns.dns.{zone}", "hostmaster.{zone}"), ("ns1.provider.net.", "hostmaster.provider.net."),
             ("{zone}", "{zone}"), (".", "."), ("NS.Dns.{zone}", "h.{zone}"), ("ns.{zone}", "ns.dns.{zone}"))
LABELS = ("www", "WwW", "ns", "NS", "dns", "dNs", "hostmaster", "x", "cluster", "local", "provider", "net",
          "a" * 63, "b" * 50, "h", "e", "example")


def _name(zone: str, labels: list[str]) -> str:
    return ".".join(labels) + "." + ("" if zone == "." else zone) if labels else zone


def _soa(zone: str, names: tuple[str, str], ttl: int) -> dns.rrset.RRset:
    mname, rname = (n.format(zone="" if zone == "." else zone) or "." for n in names)
    return dns.rrset.from_text(zone.lower(), ttl, "IN", "SOA", f"{mname} {rname} 2026120701 7200 1800 86400 30")


def _query(name: str, rdtype: int, flags: int, edns: int, do: bool, payload: int,
           options: list[dns.edns.Option]) -> bytes:
    m = dns.message.make_query(name, rdtype, use_edns=edns if edns >= 0 else False, want_dnssec=do,
                               payload=payload, options=options if edns >= 0 else None)
    m.flags = flags
    return m.to_wire()


def _dnspython(wire: bytes, rcode: int, soa: dns.rrset.RRset | None, authoritative: bool) -> bytes:
    """The answer as the handlers built it with dnspython (FileHandler.build, respond())."""
    response = make_response(dns.message.from_wire(wire), authoritative=authoritative)
    response.set_rcode(rcode)
    if soa is not None:
        response.authority.append(soa)
    return render(response)


def _parsed(wire: bytes) -> Query:
    query = parse_query(wire)
    assert query is not None
    return query


@st.composite
def cases(draw: st.DrawFn) -> tuple[bytes, int, dns.rrset.RRset | None, bool]:
    zone = draw(st.sampled_from(ZONES))
    labels = draw(st.lists(st.sampled_from(LABELS), max_size=4))
    while sum(len(x) + 1 for x in labels) + len(zone) > 250:  # (a name of at most 255 bytes)
        labels = labels[1:]
    name = _name(zone, labels)
    rdtype = draw(st.sampled_from((1, 28, 33, 16, 6, 2, 255, 65, 252, 12, 99)))
    flags = draw(st.sampled_from((0, 0x0100, 0x0110, 0x0120, 0x0130)))
    edns = draw(st.sampled_from((-1, 0)))
    do = edns >= 0 and draw(st.booleans())
    payload = draw(st.sampled_from((512, 1232, 4096)))
    options = draw(st.sampled_from(([], [dns.edns.GenericOption(10, b"\x01" * 8)],
                                    [dns.edns.GenericOption(3, b"")])))
    rcode = draw(st.sampled_from((dns.rcode.NXDOMAIN, dns.rcode.NOERROR, dns.rcode.SERVFAIL, dns.rcode.REFUSED)))
    with_soa = draw(st.booleans())
    soa = _soa(zone, draw(st.sampled_from(SOA_NAMES)), draw(st.sampled_from((0, 5, 300, 3600)))) if with_soa else None
    return _query(name, rdtype, flags, edns, do, payload, options), rcode, soa, draw(st.booleans())


@settings(max_examples=600, deadline=None)
@given(cases())
def test_negative_response_is_dnspythons(case: tuple[bytes, int, dns.rrset.RRset | None, bool]) -> None:
    wire, rcode, soa, authoritative = case
    built = negative_response(_parsed(wire), rcode, None if soa is None else SoaRecord.from_rrset(soa), authoritative)
    assert built == _dnspython(wire, rcode, soa, authoritative)


@pytest.mark.parametrize(("name", "zone", "names"), [
    # The question is the zone's apex: the owner points at the question's start.
    ("Cluster.Local.", "cluster.local.", SOA_NAMES[0]),
    # The question is the SOA's mname itself, and a name under it: mname is one pointer.
    ("ns.dns.cluster.local.", "cluster.local.", SOA_NAMES[0]),
    ("x.NS.DNS.cluster.local.", "cluster.local.", SOA_NAMES[0]),
    # rname points into mname (both outside the zone).
    ("www.example.org.", "example.org.", SOA_NAMES[1]),
    # A name near the 255-byte limit.
    (".".join(["a" * 63] * 3) + "." + "b" * 48 + ".example.org.", "example.org.", SOA_NAMES[0]),
    # The root zone: the owner is written, not pointed at.
    ("www.example.", ".", SOA_NAMES[1]),
])
@pytest.mark.parametrize("rcode", [dns.rcode.NXDOMAIN, dns.rcode.NOERROR])
@pytest.mark.parametrize("edns", [-1, 0])
def test_corner_cases(name: str, zone: str, names: tuple[str, str], rcode: int, edns: int) -> None:
    wire = _query(name, 1, 0x0100, edns, edns >= 0, 1232, [])
    soa = _soa(zone, names, 5)
    assert negative_response(_parsed(wire), rcode, SoaRecord.from_rrset(soa)) == _dnspython(wire, rcode, soa, True)


def test_a_suffix_that_only_ends_the_question_is_no_pointer_target() -> None:
    """A label holding the bytes of a shorter name (b"q\\x02ns" ends like "ns." does) must not
    be pointed at: dnspython compares names by labels."""
    name = dns.name.Name((b"q\x02ns", b"example", b"org", b""))
    zone = "example.org."
    wire = _query(name.to_text(), 1, 0, -1, False, 512, [])
    soa = dns.rrset.from_text(zone, 5, "IN", "SOA", "ns.example.org. ns. 1 2 3 4 5")
    assert negative_response(_parsed(wire), 3, SoaRecord.from_rrset(soa)) == _dnspython(wire, 3, soa, True)


def test_a_query_asking_for_padding_is_left_to_dnspython() -> None:
    """dnspython pads the answer to a padded query (RFC 8467): the wire writer declines it."""
    wire = _query("www.example.org.", 1, 0, 0, False, 1232, [dns.edns.GenericOption(12, b"\x00" * 16)])
    soa = _soa("example.org.", SOA_NAMES[0], 5)
    assert negative_response(_parsed(wire), 3, SoaRecord.from_rrset(soa)) is None
    assert len(_dnspython(wire, 3, soa, True)) == 468  # (what it would have had to write)
