"""The wire record reader and writer (interkube.dns.records), checked against dnspython."""

from __future__ import annotations

import struct

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interkube.dns import records as rr

from dns_responses import Record, any_records, names, response, three_sections

QNAME = b"\x03web\x04shop\x03svc\x07cluster\x05local\x00"
HEADER = struct.pack("!HHHHHH", 1, 0x8180, 1, 0, 0, 0)


def message(*records: bytes, an: int | None = None, question: bytes = QNAME + b"\x00\x01\x00\x01") -> bytes:
    """Header (one question, ``an`` answers: all records by default), question, records as given."""
    count = len(records) if an is None else an
    return struct.pack("!HHHHHH", 1, 0x8180, 1, count, 0, 0) + question + b"".join(records)


def a_record(owner: bytes, addr: bytes = b"\x0a\x00\x00\x01", ttl: int = 30) -> bytes:
    return owner + struct.pack("!HHIH", 1, 1, ttl, len(addr)) + addr


# -- names ----------------------------------------------------------------------------------


def test_read_name_uncompressed_and_through_pointers() -> None:
    wire = message(a_record(b"\xc0\x0c"), a_record(b"\x01x\xc0\x10"))
    assert rr.read_name(wire, 12) == (QNAME, 12 + len(QNAME))
    start = 12 + len(QNAME) + 4
    name, end = rr.read_name(wire, start)
    assert (name, end) == (QNAME, start + 2)
    # A label, then a pointer into the middle of the question (at "shop").
    second = start + 2 + 14
    assert rr.read_name(wire, second) == (b"\x01x" + QNAME[4:], second + 4)


def test_a_cached_name_gives_the_same_result() -> None:
    wire = message(a_record(b"\xc0\x0c"), a_record(b"\x01x\xc0\x0c"))
    cache: dict[int, tuple[bytes, int, int]] = {}
    assert rr.read_name(wire, 12, None, cache)[0] == QNAME
    start = 12 + len(QNAME) + 4
    assert rr.read_name(wire, start, None, cache) == rr.read_name(wire, start)
    second = start + 2 + 14
    assert rr.read_name(wire, second, None, cache) == (b"\x01x" + QNAME, second + 4)


@pytest.mark.parametrize(("owner", "why"), [
    (b"\xc0\x2c", "backwards"),         # a pointer to itself (the record starts at 44)
    (b"\xc0\x2d", "backwards"),         # forwards
    (b"\xff\xff", "backwards"),         # far past the end
    (b"\x41abc", "label type"),          # 0x40: extended label type
    (b"\x81abc", "label type"),          # 0x80: reserved
    (b"\x05ab", "bounds"),               # runs off the end
    (b"\xc0", "past the end"),           # half a pointer
])
def test_bad_names_are_malformed(owner: bytes, why: str) -> None:
    wire = message(owner, an=1)
    assert 12 + len(QNAME) + 4 == 0x2C
    with pytest.raises(rr.Malformed, match=why):
        rr.read_message(wire)


def test_pointer_loops_are_rejected() -> None:
    # Two names pointing at each other: at 12 a pointer to 14, at 14 a pointer to 12.
    loop = struct.pack("!HHHHHH", 1, 0x8180, 2, 0, 0, 0) + b"\xc0\x0e\x00\x01\x00\x01" + b"\xc0\x0c\x00\x01\x00\x01"
    with pytest.raises(rr.Malformed):
        rr.read_message(loop)
    with pytest.raises(dns.exception.FormError):
        dns.message.from_wire(loop)
    # A pointer to a label that continues into the pointer itself.
    overlap = struct.pack("!HHHHHH", 1, 0x8180, 1, 0, 0, 0) + b"\x01a\xc0\x0c\x00\x01\x00\x01"
    with pytest.raises(rr.Malformed):
        rr.read_message(overlap)
    with pytest.raises(dns.exception.FormError):
        dns.message.from_wire(overlap)


def test_pointer_chains_are_bounded() -> None:
    # A 1-byte-label name, then 17 names each "\x01a" + pointer to the one before: every hop
    # points backwards, but a chain longer than 16 is refused (as dnspython does).
    body = bytearray(b"\x01a\x00")
    starts = [12]
    for _ in range(17):
        starts.append(12 + len(body))
        body += b"\x01a" + struct.pack("!H", 0xC000 | starts[-2])
    head = struct.pack("!HHHHHH", 1, 0x8180, 0, 0, 0, 0)
    wire = head + bytes(body)
    name, _ = rr.read_name(wire, starts[16])  # 16 hops: fine
    assert name == b"\x01a" * 17 + b"\x00"
    with pytest.raises(rr.Malformed, match="too long"):
        rr.read_name(wire, starts[17])


def test_names_longer_than_255_bytes_are_malformed() -> None:
    long = b"\x3f" + b"a" * 63
    name = long * 4 + b"\x00"  # 257 bytes
    with pytest.raises(rr.Malformed, match="255"):
        rr.read_name(name, 0)
    # Also when the length comes together through a pointer.
    wire = HEADER[:4] + b"\x00\x00" * 4 + long * 3 + b"\x00" + long + b"\xc0\x0c"
    with pytest.raises(rr.Malformed, match="255"):
        rr.read_name(wire, 12 + 64 * 3 + 1)


# -- records --------------------------------------------------------------------------------

#: Rdata of each name-bearing type with its names compressed: pointers to the question name
#: (offset 12) and to its "cluster.local" suffix (offset 25), as a server may send them.
CLUSTER_LOCAL = b"\xc0\x19"
COMPRESSED = {
    "CNAME": b"\x05web-0\x03Web\xc0\x10",
    "NS": b"\x02ns\x03dns" + CLUSTER_LOCAL,
    "PTR": b"\xc0\x0c",
    "DNAME": b"\x05other" + CLUSTER_LOCAL,
    "MX": b"\x00\x0a\x04mail\xc0\x10",
    "SRV": b"\x00\x00\x00\x32\x00\x50\x05web-0\xc0\x0c",
    "SOA": (b"\x02ns\x03dns" + CLUSTER_LOCAL + b"\x0ahostmaster" + CLUSTER_LOCAL
            + struct.pack("!5I", 1, 7200, 1800, 86400, 20)),
}


@pytest.mark.parametrize("rdtype", sorted(COMPRESSED))
def test_every_name_bearing_type_is_decompressed(rdtype: str) -> None:
    code = dns.rdatatype.from_text(rdtype)
    rdata = COMPRESSED[rdtype]
    wire = message(b"\xc0\x0c" + struct.pack("!HHIH", code, 1, 30, len(rdata)) + rdata)
    m = rr.read_message(wire)
    ((owner, rtype, rclass, ttl, mine),) = m.answer
    assert (owner, rtype, rclass, ttl) == (QNAME, code, 1, 30)
    if rdtype == "DNAME":
        # dnspython refuses a compressed DNAME target; RFC 6672 (2.5) says to decompress it.
        with pytest.raises(dns.name.DecompressionForbidden):
            dns.message.from_wire(wire)
        assert mine == b"\x05other\x07cluster\x05local\x00"
    else:  # what dnspython reads, written out uncompressed
        assert mine == dns.message.from_wire(wire).answer[0][0].to_wire()
    assert len(mine) > len(rdata) and b"\xc0" not in mine
    # The pointer in the rdata must lie within the rdata: cut the name short and it is malformed.
    cut = rdata[:-1] if rdtype != "SOA" else rdata[:-21]
    short = message(b"\xc0\x0c" + struct.pack("!HHIH", code, 1, 30, len(cut)) + cut)
    with pytest.raises(rr.Malformed):
        rr.read_message(short)
    with pytest.raises(dns.exception.FormError):
        dns.message.from_wire(short)


def test_srv_outside_class_in_is_opaque_as_dnspython_reads_it() -> None:
    # SRV is a class IN type: in class 257 its 4 bytes are rdata, not a priority and a name.
    srv = b"\xc0\x0c" + struct.pack("!HHIH", 33, 257, 0, 4) + b"\x0a\x00\x00\x01"
    wire = message(srv)
    assert rr.read_message(wire).answer == [(QNAME, 33, 257, 0, b"\x0a\x00\x00\x01")]
    assert dns.message.from_wire(wire).answer[0][0].to_wire() == b"\x0a\x00\x00\x01"


def test_rdata_names_keys_and_moves() -> None:
    srv = b"\x00\x00\x00\x32\x00\x50" + b"\x05Web-0" + QNAME
    assert rr.rdata_names(rr.TYPE_SRV, srv) == [(6, len(srv))]
    assert rr.rdata_key(rr.TYPE_SRV, srv) == srv[:6] + srv[6:].lower()
    # MX preference 0x4142 ("AB") is not a name: never lower-cased.
    mx = b"\x41\x42" + b"\x04Mail\x00"
    assert rr.rdata_key(rr.TYPE_MX, mx) == b"\x41\x42\x04mail\x00"
    soa = b"\x02NS\x00\x02HM\x00" + bytes(range(65, 85))
    assert rr.rdata_names(rr.TYPE_SOA, soa) == [(0, 4), (4, 8)]
    assert rr.rdata_key(rr.TYPE_SOA, soa) == b"\x02ns\x00\x02hm\x00" + bytes(range(65, 85))
    assert rr.rdata_key(rr.TYPE_A, b"ABCD") == b"ABCD"
    zone, merged = b"\x07cluster\x05local\x00", b"\x07cluster\x03all\x00"
    moved = rr.map_rdata_names(rr.TYPE_SOA, b"\x02ns\x07Cluster\x05LOCAL\x00\x02hm\x00" + bytes(20),
                               lambda n: rr.move_name(n, zone, merged))
    assert moved == b"\x02ns" + merged + b"\x02hm\x00" + bytes(20)


def test_move_name_on_label_boundaries_only() -> None:
    zone, merged = b"\x07cluster\x05local\x00", b"\x07cluster\x03all\x00"
    assert rr.move_name(b"\x03Web\x07Cluster\x05Local\x00", zone, merged) == b"\x03Web" + merged
    assert rr.move_name(zone, zone, merged) == merged
    assert rr.move_name(b"\x08xcluster\x05local\x00", zone, merged) == b"\x08xcluster\x05local\x00"
    assert rr.move_name(b"\x03web\x07example\x00", zone, merged) == b"\x03web\x07example\x00"
    # The last bytes spell the zone, but they start inside the label "a\x07cluster": not in it.
    inside = b"\x09a\x07cluster\x05local\x00"
    assert inside.endswith(zone) and not rr.is_label_suffix(inside, len(zone))
    assert rr.move_name(inside, zone, merged) == inside


def test_opt_extended_rcode_and_misplaced_opt() -> None:
    q = dns.message.make_query("web.shop.svc.cluster.local.", "A", use_edns=0)
    resp = dns.message.make_response(q)
    resp.set_rcode(dns.rcode.BADVERS)
    m = rr.read_message(resp.to_wire())
    assert m.rcode == dns.rcode.BADVERS and m.opt is not None and not m.additional
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    with pytest.raises(rr.Malformed, match="OPT"):
        rr.read_message(message(opt))                       # in the answer section
    two = struct.pack("!HHHHHH", 1, 0x8180, 1, 0, 0, 2) + QNAME + b"\x00\x01\x00\x01" + opt + opt
    with pytest.raises(rr.Malformed, match="OPT"):
        rr.read_message(two)


def test_lengths_and_trailing_bytes() -> None:
    with pytest.raises(rr.Malformed, match="rdata of 5"):
        rr.read_message(message(a_record(b"\xc0\x0c", b"\x0a\x00\x00\x01\x02")))
    with pytest.raises(rr.Malformed, match="after the last"):
        rr.read_message(message(a_record(b"\xc0\x0c")) + b"\x00")
    with pytest.raises(rr.Malformed, match="past the end"):
        rr.read_message(message(a_record(b"\xc0\x0c"))[:-1])
    with pytest.raises(rr.Malformed, match="header"):
        rr.read_message(b"\x00" * 11)
    # A CNAME whose rdata is one byte longer than its name.
    cname = b"\xc0\x0c" + struct.pack("!HHIH", 5, 1, 30, 4) + b"\x01a\x00" + b"x"
    with pytest.raises(rr.Malformed, match="does not match"):
        rr.read_message(message(cname))


def test_writer() -> None:
    rec = rr.encode_record(b"\xc0\x0c", 1, 1, 30, b"\x0a\x00\x00\x01")
    head = rr.encode_header(b"\x12\x34", 0x8180, 1, 1, 0, 0)
    m = dns.message.from_wire(head + QNAME + b"\x00\x01\x00\x01" + rec)
    assert m.id == 0x1234 and m.answer[0].name.to_text() == "web.shop.svc.cluster.local."
    assert m.answer[0].ttl == 30 and m.answer[0][0].address == "10.0.0.1"
    soa = dns.rdata.from_text("IN", "SOA", "ns. hm. 1 2 3 4 5").to_wire()
    assert rr.soa_minimum(soa) == 5 and rr.soa_minimum(rr.with_soa_minimum(soa, 9)) == 9


# -- against dnspython ----------------------------------------------------------------------

NAMES = names()
RECORDS = any_records(NAMES, max_ttl=2**31 - 1, dname=True)


#: Types whose whole rdata this reader checks as dnspython does.
CHECKED_TYPES = {rr.TYPE_A, rr.TYPE_AAAA, rr.TYPE_CNAME, rr.TYPE_NS, rr.TYPE_PTR, rr.TYPE_MX, rr.TYPE_SRV, rr.TYPE_SOA}


def records_of(section: list[dns.rrset.RRset]) -> list[tuple[bytes, int, int, int, bytes]]:
    return [(rrset.name.to_wire(), rrset.rdtype, rrset.rdclass, rrset.ttl, rd.to_wire())
            for rrset in section for rd in rrset]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(NAMES, three_sections(RECORDS), st.booleans())
def test_reads_what_dnspython_reads(question: str, sections: list[list[Record]],
                                    edns: bool) -> None:
    sent = response(question, sections, edns)
    wire = sent.to_wire()  # compressed by dnspython
    got = dns.message.from_wire(wire)
    m = rr.read_message(wire)
    assert m.rcode == got.rcode() and m.flags == got.flags
    assert m.question == [(got.question[0].name.to_wire(), 1, 1)]
    assert (m.opt is not None) == (got.edns >= 0)
    # dnspython merges records into RRsets (smallest TTL, duplicates once); compare likewise.
    for mine, theirs in ((m.answer, got.answer), (m.authority, got.authority), (m.additional, got.additional)):
        merged: dict[tuple[bytes, int], dns.rrset.RRset] = {}
        for owner, rtype, rclass, ttl, rdata in mine:
            name = dns.name.from_wire(owner, 0)[0]
            rrset = merged.setdefault((owner.lower(), rtype), dns.rrset.RRset(name, rclass, rtype))
            rrset.add(dns.rdata.from_wire(rclass, rtype, rdata, 0, len(rdata)), ttl)
        assert list(merged.values()) == theirs
        assert [r.ttl for r in merged.values()] == [r.ttl for r in theirs]
        assert records_of(list(merged.values())) == records_of(theirs)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(NAMES, st.lists(RECORDS, min_size=1, max_size=4), st.integers(12, 400), st.binary(min_size=1, max_size=3))
def test_mangled_messages_are_malformed_exactly_when_dnspython_refuses_them(
        question: str, records: list[Record], where: int, junk: bytes) -> None:
    """Never an exception but Malformed, and the same verdict as dnspython where both check."""
    wire = response(question, [records, [], []], False).to_wire()
    where = min(where, len(wire) - 1)
    mangled = wire[:where] + junk + wire[where + len(junk):]
    try:
        dns.message.from_wire(mangled)
        theirs = True
    except (dns.exception.DNSException, ValueError, IndexError, UnicodeError):
        theirs = False
    try:
        m = rr.read_message(mangled)
    except rr.Malformed:
        m = None
    if theirs:
        assert m is not None, mangled.hex()
    elif m is not None:
        # Accepted here, refused by dnspython: only where this reader takes rdata as is (a
        # mangled type field can make any type) or reads a compressed DNAME.
        types = {r[1] for r in m.answer + m.authority + m.additional}
        assert m.opt is not None or not types <= CHECKED_TYPES, mangled.hex()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_is_malformed_never_an_exception(data: bytes) -> None:
    try:
        rr.read_message(data)
    except rr.Malformed:
        pass
    try:
        rr.read_message(HEADER[:4] + b"\x00\x01\x00\x03\x00\x01\x00\x02" + data)
    except rr.Malformed:
        pass


# -- plain answers (read_plain_answer) --------------------------------------------------------

#: Types a plain answer may hold, with rdata as dnspython writes it.
PLAIN_RDATA = {"A": ["10.0.0.1", "10.0.0.2"], "AAAA": ["fd00::1"], "TXT": ['"x"', '"a" "b"']}


def question_of(name: str, rdtype: str = "A") -> bytes:
    """The question as merge sends and matches it: the name lower-cased, type, class IN."""
    return (dns.name.from_text(name).to_wire().lower()
            + struct.pack("!HH", dns.rdatatype.from_text(rdtype), dns.rdataclass.IN))


def plain_agrees(wire: bytes, question: bytes) -> bool:
    """Whether ``wire`` was read as plain; if so, read_message reads it alike (and must not raise)."""
    plain = rr.read_plain_answer(wire, question)
    if plain is None:
        return False
    m = rr.read_message(wire)
    rcode, records = plain
    assert rcode == m.rcode
    assert m.authority == [] and m.additional == []
    for tc, _ttl, rd in records:
        assert len(tc) == 4 and struct.unpack("!H", rd[:2])[0] == len(rd) - 2
    assert [(owner.lower(), rtype, rclass, ttl, rdata) for owner, rtype, rclass, ttl, rdata in m.answer] == [
        (question[:-4], *struct.unpack("!HH", tc), ttl, rd[2:]) for tc, ttl, rd in records]
    return True


@st.composite
def plain_responses(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A response of the plain shape to an A query (the question's own A, AAAA or TXT records,
    the owner in any case, EDNS or not, NOERROR or NXDOMAIN or BADVERS), and its question."""
    name = draw(NAMES)
    owner = st.sampled_from([name, name.upper()])
    record = st.sampled_from(sorted(PLAIN_RDATA)).flatmap(lambda t: st.tuples(
        owner, st.integers(0, 2**31 - 1), st.just(t), st.sampled_from(PLAIN_RDATA[t])))
    edns = draw(st.booleans())
    m = response(name, [draw(st.lists(record, max_size=4)), [], []], edns)
    m.set_rcode(draw(st.sampled_from([dns.rcode.NOERROR, dns.rcode.NXDOMAIN] + ([dns.rcode.BADVERS] if edns else []))))
    return m.to_wire(), question_of(name.upper() if draw(st.booleans()) else name)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain_responses())
def test_plain_answers_are_read_plain_and_as_read_message_reads_them(case: tuple[bytes, bytes]) -> None:
    wire, question = case
    assert plain_agrees(wire, question)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(NAMES, three_sections(RECORDS), st.booleans())
def test_other_answers_are_not_plain_or_read_alike(question: str, sections: list[list[Record]], edns: bool) -> None:
    wire = response(question, sections, edns).to_wire()
    plain = plain_agrees(wire, question_of(question))
    # Plain only without authority and additional records, every answer record the question's own.
    owned = all(dns.name.from_text(name) == dns.name.from_text(question) and rtype in PLAIN_RDATA
                for name, _ttl, rtype, _rdata in sections[0])
    assert plain == (owned and not sections[1] and not sections[2])


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain_responses(), st.integers(0, 400), st.binary(min_size=1, max_size=3), st.integers(-3, 3))
def test_a_mangled_plain_answer_is_never_read_plain_where_read_message_refuses_it(
        case: tuple[bytes, bytes], where: int, junk: bytes, cut: int) -> None:
    wire, question = case
    where = min(where, len(wire) - 1)
    mangled = wire[:where] + junk + wire[where + len(junk):]
    mangled = mangled[:len(mangled) + cut] if cut < 0 else mangled + junk[:cut]
    try:
        plain_agrees(mangled, question)
    except rr.Malformed as exc:
        raise AssertionError(f"read plain, refused by read_message ({exc}): {mangled.hex()}") from None


def test_what_is_not_plain() -> None:
    q = question_of("web.shop.svc.cluster.local.")
    good = message(a_record(b"\xc0\x0c"))
    assert rr.read_plain_answer(good, q) == (0, [(b"\x00\x01\x00\x01", 30, b"\x00\x04\x0a\x00\x00\x01")])
    cname = b"\xc0\x0c" + struct.pack("!HHIH", 5, 1, 30, 2) + b"\xc0\x0c"
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    not_plain = {
        "another question": (good, question_of("web.shop.svc.cluster.local.", "AAAA")),
        "an owner spelled out": (message(a_record(QNAME)), q),
        "a CNAME": (message(cname), q),
        "an authority record": (good[:8] + b"\x00\x01" + good[10:], q),
        "an additional record that is not OPT": (good[:10] + b"\x00\x01" + good[12:] + a_record(b"\xc0\x0c"), q),
        "two OPT records": (good[:10] + b"\x00\x02" + good[12:] + opt + opt, q),
        "a root-owned A as the additional record": (good[:10] + b"\x00\x01" + good[12:] + a_record(b"\x00"), q),
        "an A of 5 bytes": (message(a_record(b"\xc0\x0c", b"\x0a\x00\x00\x01\x02")), q),
        "a byte after the last record": (good + b"\x00", q),
        "a byte short": (good[:-1], q),
        "no question to match": (good, b""),
    }
    for why, (wire, question) in not_plain.items():
        assert rr.read_plain_answer(wire, question) is None, why
    with_opt = good[:10] + b"\x00\x01" + good[12:] + b"\x00" + struct.pack("!HHIH", 41, 1232, 1 << 24, 0)
    assert rr.read_plain_answer(with_opt, q) == (16, [(b"\x00\x01\x00\x01", 30, b"\x00\x04\x0a\x00\x00\x01")])
