"""The one wire reader (interkube.dns.reader): bounded walks, one Malformed, dnspython as the oracle.

dnspython reads the same bytes in every test here: where it accepts a message, the reader finds
the same question and records at offsets dnspython reads them from; where it refuses, the
reader refuses (or, for rdata the reader does not look into, dnspython's own rdata parser at
the reader's offsets refuses); and nothing but :class:`Malformed` ever comes out.
"""

from __future__ import annotations

import struct

import dns.edns
import dns.exception
import dns.message
import dns.name
import dns.opcode
import dns.rdata
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from interkube.dns import reader
from interkube.dns.reader import Malformed, Walk
from interkube.dns.wire import admissible, parse_query
from interkube.errors import InterkubeError, MalformedMessage

from dns_responses import LABELS, Record, any_records, names, response, three_sections

# dnspython refuses with these (FormError and its kin are DNSExceptions; a bad option's
# ValueError, a bad label's UnicodeError come through from its rdata and name readers).
DNSPYTHON_REFUSALS = (dns.exception.DNSException, ValueError, IndexError, UnicodeError, struct.error)

QNAME = b"\x03web\x04shop\x03svc\x07cluster\x05local\x00"


def header(qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0, flags: int = 0x8180) -> bytes:
    return struct.pack("!HHHHHH", 0x1234, flags, qd, an, ns, ar)


def a_record(owner: bytes, rdata: bytes = b"\x0a\x00\x00\x01") -> bytes:
    return owner + struct.pack("!HHIH", 1, 1, 30, len(rdata)) + rdata


# -- the exception ------------------------------------------------------------------------------


def test_one_malformed_under_the_project_hierarchy() -> None:
    from interkube.dns import records

    assert issubclass(Malformed, MalformedMessage) and issubclass(Malformed, InterkubeError)
    assert records.Malformed is Malformed  # merge's vocabulary is the reader's
    from interkube.plugins.cache import entry

    assert entry.Malformed is Malformed and not hasattr(entry, "_skip_name")


# -- names: each class of corruption, by hand ---------------------------------------------------


@pytest.mark.parametrize(("data", "why"), [
    (b"\x03web", "bounds"),                        # a label past the end
    (b"\x03we", "bounds"),
    (b"", "bounds"),
    (b"\xc0", "bounds"),                           # half a pointer
    (b"\x41abc\x00", "reserved label type 0x40"),  # extended label type (RFC 6891)
    (b"\x81abc\x00", "reserved label type 0x80"),  # reserved
])
def test_skip_name_refuses_with_malformed_never_index_error(data: bytes, why: str) -> None:
    wire = header(qd=0) + data
    with pytest.raises(Malformed, match=why):
        reader.skip_name(wire, 12)
    with pytest.raises(dns.exception.DNSException):
        dns.name.from_wire(wire, 12)


def test_skip_name_follows_and_checks_pointers() -> None:
    wire = header() + QNAME + b"\x00\x01\x00\x01" + b"\x01x\xc0\x10"
    start = 12 + len(QNAME) + 4
    assert reader.skip_name(wire, start) == len(wire)
    assert reader.read_name(wire, start) == (b"\x01x" + QNAME[4:], len(wire))
    # A pointer to itself, one forward, one past the end, and two names pointing at each other.
    for bad in (struct.pack("!H", 0xC000 | start), struct.pack("!H", 0xC000 | (start + 2)), b"\xff\xff"):
        wire = header() + QNAME + b"\x00\x01\x00\x01" + bad
        with pytest.raises(Malformed, match="backwards"):
            reader.skip_name(wire, start)
    loop = header(qd=2) + b"\xc0\x12\x00\x01\x00\x01" + b"\xc0\x0c\x00\x01\x00\x01"
    with pytest.raises(Malformed):
        Walk(loop)
    with pytest.raises(dns.exception.FormError):
        dns.message.from_wire(loop)


def test_counts_beyond_the_data_end_at_the_data() -> None:
    body = QNAME + b"\x00\x01\x00\x01" + a_record(b"\xc0\x0c")
    for counts in ((1, 2, 0, 0), (1, 1, 65535, 0), (1, 1, 0, 65535), (65535, 0, 0, 0)):
        wire = header(*counts) + body
        with pytest.raises(Malformed):
            list(Walk(wire).records())
        with pytest.raises(dns.exception.FormError):
            dns.message.from_wire(wire)
    walked = Walk(header(an=1) + body)
    assert [r[3] for r in walked.records()] == [1] and walked.end == len(body) + 12


def test_opt_and_tsig_placement() -> None:
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    question = QNAME + b"\x00\x01\x00\x01"
    for wire in (header(an=1) + question + opt,                  # OPT in the answer section
                 header(ar=2) + question + opt + opt,            # two OPT records
                 header(ar=1) + question + b"\xc0\x0c" + opt[1:]):  # OPT owned by the question name
        with pytest.raises(Malformed) as refused:
            list(Walk(wire).records())
        assert refused.value.reason == reader.REASON_OPT
        with pytest.raises(dns.message.BadEDNS):
            dns.message.from_wire(wire)
    tsig = b"\x00" + struct.pack("!HHIH", 250, 255, 0, 0)
    with pytest.raises(Malformed, match="TSIG"):
        list(Walk(header(ar=2) + question + tsig + opt).records())


# -- against dnspython: valid messages ----------------------------------------------------------

NAMES = names([*LABELS, "_http", "_tcp"])
SECTIONS = three_sections(any_records(NAMES, max_ttl=2**32 - 1, dname=False))


def walk_all(wire: bytes) -> tuple[Walk, list[reader.RecordAt]]:
    walked = Walk(wire)
    return walked, list(walked.records())


def assert_agrees(wire: bytes, walked: Walk, records: list[reader.RecordAt], theirs: dns.message.Message) -> None:
    """The reader's question, record offsets and records are dnspython's."""
    assert walked.id == theirs.id and walked.flags == theirs.flags
    assert walked.question == [(rrset.name.to_wire(), rrset.rdtype, rrset.rdclass) for rrset in theirs.question]
    # The records tile the message from the question's end to the last byte, and each one's
    # owner, fields and rdata read at those offsets by dnspython's own readers are the record.
    offset = walked.question_end
    rebuilt: list[dict[tuple[bytes, int, int, int], dns.rrset.RRset]] = [{}, {}, {}]
    opt = None
    for owner, start, section, rtype, rclass, ttl, rdata, rdlen in records:
        assert start == offset
        name, used = dns.name.from_wire(wire, start)
        assert name.to_wire() == owner and start + used + 10 == rdata
        assert struct.unpack_from("!HHIH", wire, rdata - 10) == (rtype, rclass, ttl, rdlen)
        rd = dns.rdata.from_wire(rclass, rtype, wire, rdata, rdlen)
        offset = rdata + rdlen
        if rtype == dns.rdatatype.OPT:
            opt = rd
            continue
        key = (owner.lower(), rclass, rtype, rd.covers())
        rrset = rebuilt[section].setdefault(key, dns.rrset.RRset(name, rclass, rtype, rd.covers()))
        rrset.add(rd, 0 if ttl > 0x7FFFFFFF else ttl)  # RFC 2181 section 8, as dnspython reads it
    assert offset == walked.end == len(wire)
    for mine, their_section in zip(rebuilt, (theirs.answer, theirs.authority, theirs.additional), strict=True):
        assert list(mine.values()) == their_section
        assert [r.ttl for r in mine.values()] == [r.ttl for r in their_section]
    assert (opt is None) == (theirs.opt is None)
    if opt is not None:
        assert opt == theirs.opt[0]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(NAMES, SECTIONS, st.booleans())
def test_valid_messages_read_as_dnspython_reads_them(question: str, sections: list[list[Record]],
                                                     edns: bool) -> None:
    wire = response(question, sections, edns).to_wire()
    walked, records = walk_all(wire)
    assert_agrees(wire, walked, records, dns.message.from_wire(wire))


# -- against dnspython: corrupted messages ------------------------------------------------------


def name_starts(wire: bytes) -> list[int]:
    """Where the valid message's question name and owners start (targets for corruption)."""
    _, records = walk_all(wire)
    return [12] + [r[1] for r in records]


def truncate(wire: bytes, data: st.DataObject) -> bytes:
    return wire[:data.draw(st.integers(0, len(wire) - 1))]


def pointer_loop(wire: bytes, data: st.DataObject) -> bytes:
    """A name that is a pointer to itself, or two names that point at each other."""
    starts = name_starts(wire)
    at = data.draw(st.sampled_from(starts))
    if len(starts) > 1 and data.draw(st.booleans()):
        first, second = sorted(data.draw(st.lists(st.sampled_from(starts), min_size=2, max_size=2, unique=True)))
        out = bytearray(wire)
        out[first:first + 2] = struct.pack("!H", 0xC000 | second)
        out[second:second + 2] = struct.pack("!H", 0xC000 | first)
        return bytes(out)
    return wire[:at] + struct.pack("!H", 0xC000 | at) + wire[at + 2:]


def forward_pointer(wire: bytes, data: st.DataObject) -> bytes:
    at = data.draw(st.sampled_from(name_starts(wire)))
    target = data.draw(st.integers(at + 1, min(0x3FFF, len(wire) + 16)))
    return wire[:at] + struct.pack("!H", 0xC000 | target) + wire[at + 2:]


def reserved_label(wire: bytes, data: st.DataObject) -> bytes:
    """A label length byte (of a name's first label, or any byte) turned into type 0x40 or 0x80."""
    at = data.draw(st.one_of(st.sampled_from(name_starts(wire)), st.integers(12, len(wire) - 1)))
    kind = data.draw(st.sampled_from([0x40, 0x80]))
    return wire[:at] + bytes((kind | (wire[at] & 0x3F),)) + wire[at + 1:]


def counts_beyond(wire: bytes, data: st.DataObject) -> bytes:
    which = data.draw(st.integers(0, 3))
    old = struct.unpack_from("!H", wire, 4 + 2 * which)[0]
    new = data.draw(st.one_of(st.integers(old + 1, old + 8), st.just(0xFFFF)))
    return wire[:4 + 2 * which] + struct.pack("!H", new) + wire[6 + 2 * which:]


def mangle(wire: bytes, data: st.DataObject) -> bytes:
    at = data.draw(st.integers(0, len(wire) - 1))
    junk = data.draw(st.binary(min_size=1, max_size=3))
    return wire[:at] + junk + wire[at + len(junk):]


CORRUPTIONS = {"truncate": truncate, "pointer loop": pointer_loop, "forward pointer": forward_pointer,
               "reserved label type": reserved_label, "counts beyond the data": counts_beyond, "mangle": mangle}


def complete(wire: bytes) -> tuple[Walk, list[reader.RecordAt]] | None:
    """The reader's walk when it accepts the whole message and dnspython's rdata readers accept
    each record's rdata at the reader's offsets (the reader does not look into rdata); else None.
    Raises whatever the reader raises."""
    try:
        walked, records = walk_all(wire)
    except Malformed:
        return None
    if walked.end != len(wire) or any(r[3] == dns.rdatatype.TSIG for r in records):
        return None  # (dnspython refuses trailing bytes, and a TSIG without a keyring)
    try:
        for _, _, _, rtype, rclass, _, rdata, rdlen in records:
            dns.rdata.from_wire(rclass, rtype, wire, rdata, rdlen)
    except DNSPYTHON_REFUSALS:
        return None
    return walked, records


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(NAMES, SECTIONS, st.booleans(), st.sampled_from(sorted(CORRUPTIONS)), st.data())
def test_corrupted_messages_are_refused_where_dnspython_refuses_them(
        question: str, sections: list[list[Record]], edns: bool, corruption: str,
        data: st.DataObject) -> None:
    wire = CORRUPTIONS[corruption](response(question, sections, edns).to_wire(), data)
    try:
        theirs: dns.message.Message | None = dns.message.from_wire(wire)
    except DNSPYTHON_REFUSALS:
        theirs = None
    ours = complete(wire)  # anything but Malformed fails the test here
    if len(wire) >= 12 and dns.opcode.from_flags(struct.unpack_from("!H", wire, 2)[0]) == dns.opcode.UPDATE:
        return  # dnspython reads an UPDATE's sections by other rules (zone, prerequisites)
    event(f"{corruption}: {'read' if theirs is not None else 'refused'}")
    assert (ours is not None) == (theirs is not None), (corruption, wire.hex())
    if ours is not None and theirs is not None:
        assert_agrees(wire, *ours, theirs)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_raises_malformed_and_nothing_else(data: bytes) -> None:
    for wire in (data, header(qd=1, an=3, ns=1, ar=2) + data):
        try:
            walk_all(wire)
        except Malformed:
            pass
        try:
            reader.check_query(wire)
        except Malformed:
            pass
        for offset in range(min(len(wire), 40)):
            try:
                reader.skip_name(wire, offset)
            except Malformed:
                pass


# -- EDNS options in queries: admission against dnspython ---------------------------------------


def option(code: int, body: bytes) -> bytes:
    return struct.pack("!HH", code, len(body)) + body


def ecs_body(family: int, source: int, scope: int, address: bytes) -> bytes:
    return struct.pack("!HBB", family, source, scope) + address


@st.composite
def ecs_options(draw: st.DrawFn) -> bytes:
    """Client Subnet options, mostly well-formed, with each way RFC 7871 calls one malformed."""
    family = draw(st.sampled_from([1, 1, 2, 2, 0, 3, 0xFFFF]))
    bits = {1: 32, 2: 128}.get(family, 32)
    source = draw(st.one_of(st.integers(0, bits), st.integers(bits + 1, 255)))
    scope = draw(st.one_of(st.just(0), st.integers(0, bits), st.integers(bits + 1, 255)))
    needed = (source + 7) // 8
    length = draw(st.sampled_from([needed, needed, needed, max(0, needed - 1), needed + 1]))
    address = bytearray(draw(st.binary(min_size=length, max_size=length)))
    if address and source % 8 and draw(st.booleans()):
        address[needed - 1 if needed <= length else -1] &= (0xFF << (8 - source % 8)) & 0xFF  # zero padding
    return option(8, ecs_body(family, source, scope, bytes(address)))


OPTION = st.one_of(
    ecs_options(),
    st.binary(max_size=44).map(lambda b: option(10, b)),                            # COOKIE
    st.builds(lambda code, text: option(15, code + text), st.binary(min_size=0, max_size=2),
              st.sampled_from([b"", b"text", b"text\x00", b"\xff\xfe", "é".encode()])),  # EDE
    st.sampled_from([b"\x00", b"\x07example\x00", b"\xc0\x0c", b"\x07example", b"\x41a\x00",
                     b"\x07example\x00\x00"]).map(lambda b: option(18, b)),          # Report-Channel
    st.builds(option, st.sampled_from([22, 23, 24, 25]), st.sampled_from([b"en", b"\xc3\x28", b""])),
    st.builds(option, st.integers(0, 0xFFFF), st.binary(max_size=8)),                # anything else
)
#: The option bytes as sent: well-framed, or cut, or with a length that runs past the OPT data.
OPTIONS = st.builds(lambda opts, cut, lie: (b"".join(opts)[:-cut] if cut else b"".join(opts)) + lie,
                    st.lists(OPTION, max_size=3), st.sampled_from([0, 0, 0, 1, 3]),
                    st.sampled_from([b"", b"", b"", b"\x00\x08\x00\x10\x00\x01"]))


def query_with_options(name: str, options: bytes) -> bytes:
    wire = dns.message.make_query(name, "A", use_edns=0).to_wire()
    assert wire.endswith(b"\x00\x00")  # the OPT record, last, without options
    return wire[:-2] + struct.pack("!H", len(options)) + options


@settings(max_examples=600, deadline=None)
@given(NAMES, OPTIONS)
def test_admission_refuses_the_options_dnspython_refuses(name: str, options: bytes) -> None:
    """The fast parser never admits a query dnspython would refuse (a handler would meet it),
    and admission refuses exactly what dnspython refuses, beyond RFC 7871's padding rule."""
    wire = query_with_options(name, options)
    try:
        dns.message.from_wire(wire, ignore_trailing=True)
        theirs = True
    except DNSPYTHON_REFUSALS:
        theirs = False
    fast = parse_query(wire)
    verdict = admissible(wire)
    problem = verdict if isinstance(verdict, Malformed) else None
    opt_out = problem is None and verdict != wire
    event(f"options {'read' if theirs else 'refused'}{', opt-out' if opt_out else ''}")
    # Well-framed otherwise: only options refuse, and only an opt-out takes the slow path.
    assert (fast is None) == (problem is not None or opt_out)
    if opt_out:
        assert isinstance(verdict, bytes)
        dns.message.from_wire(verdict, ignore_trailing=True)  # what the chain reads, dnspython can
    elif not theirs:
        assert problem is not None, options.hex()
        assert problem.reason in (reader.REASON_OPTION, reader.REASON_ECS)
    elif problem is not None:
        # RFC 7871 section 6 wants the address bits past the prefix zero; a dnspython that
        # does not check it accepts what the reader refuses. Nothing else may differ.
        assert "past the source prefix" in str(problem), (str(problem), options.hex())


@pytest.mark.parametrize(("body", "why"), [
    (option(8, ecs_body(3, 24, 0, b"\x0a\x00\x00")), "family 3"),
    (option(8, ecs_body(0, 8, 0, b"\x0a")), "family 0"),
    (option(8, ecs_body(1, 33, 0, b"\x0a\x00\x00\x00\x00")), "longer than family 1"),
    (option(8, ecs_body(2, 129, 0, b"\x20" + bytes(16))), "longer than family 2"),
    (option(8, ecs_body(1, 24, 33, b"\x0a\x00\x00")), "longer than family 1"),
    (option(8, ecs_body(1, 24, 0, b"\x0a\x00")), "2 bytes for a /24"),
    (option(8, ecs_body(1, 4, 0, b"\x0f")), "past the source prefix"),
    (option(8, b"\x00\x01\x18"), "shorter"),
])
def test_malformed_client_subnet_options(body: bytes, why: str) -> None:
    wire = query_with_options("web.shop.svc.cluster.local.", body)
    assert parse_query(wire) is None
    problem = admissible(wire)
    assert isinstance(problem, Malformed) and problem.reason == reader.REASON_ECS and why in str(problem)


def test_the_ecs_opt_out_dig_sends_is_admitted_without_it() -> None:
    """`dig +subnet=0` sends ECS family 0 with empty prefixes (CoreDNS answers it): the chain
    reads the query without that option, keeping every other."""
    cookie = option(10, b"12345678")
    wire = query_with_options("web.shop.svc.cluster.local.", cookie + option(8, ecs_body(0, 0, 0, b"")))
    assert parse_query(wire) is None
    admitted = admissible(wire)
    assert isinstance(admitted, bytes)
    msg = dns.message.from_wire(admitted)
    assert [o.otype for o in msg.options] == [dns.edns.OptionType.COOKIE]
    assert admitted[:2] == wire[:2] and parse_query(admitted) is not None


def test_well_formed_options_are_admitted_on_the_fast_path() -> None:
    for opts in ([dns.edns.ECSOption("10.1.2.0", 24)], [dns.edns.ECSOption("fd00::", 56, 0)],
                 [dns.edns.CookieOption(b"12345678", b"")], [dns.edns.GenericOption(65001, b"x")]):
        wire = dns.message.make_query("web.shop.svc.cluster.local.", "A", use_edns=0, options=opts).to_wire()
        q = parse_query(wire)
        assert q is not None and q.edns and admissible(wire) == wire
