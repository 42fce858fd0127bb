"""The C helper's merge of plain answers (``interkube._udpfast.merge_plain``) against the Python
code it stands in for (:func:`interkube.plugins.merge.combine.merge_answers` without it).

merge_answers hands every merge to the C helper first; where it returns None, the Python code
merges. So the helper must take exactly the answers the Python code merges from their records
(every answer plain, NOERROR or NXDOMAIN, some with data), and give the same bytes for them:
checked on answers as a cluster's DNS writes them and on the same answers mangled.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interkube.dns.wire import Query, parse_query
from interkube.plugins.merge import combine
from interkube.plugins.merge.combine import Answer, cluster_queries, merge_answers

pytestmark = pytest.mark.skipif(combine._merge_plain is None, reason="interkube._udpfast is not built")

MERGED = dns.name.from_text("cluster.all.").to_wire()
ZONE = dns.name.from_text("cluster.local.").to_wire()
CLUSTERS = ["east", "west", "central", "north"]
RDATA = {"A": ["10.0.0.1", "10.0.0.2", "10.1.0.1"], "AAAA": ["fd00::1", "fd00::2"], "TXT": ['"a"', '"a" "b"']}


class PythonOnly:
    """merge_answers without the C helper, for as long as the ``with`` lasts."""

    def __enter__(self) -> None:
        self.saved = combine._merge_plain
        combine._merge_plain = None

    def __exit__(self, *exc: object) -> None:
        combine._merge_plain = self.saved


def merged_both_ways(query: Query, answers: list[Answer], local: str | None, local_first: bool,
                     clusters: list[str]) -> tuple[bytes | None, tuple[bytes, bool]]:
    """The C helper's answer (None: it declined) and the Python code's (the bytes, and whether it
    merged from the records alone, as the helper does)."""
    queries = cluster_queries(query, len(MERGED), [(ZONE, ZONE)] * len(answers))
    links = [(c, ZONE, None) for c in clusters]
    local_index = next((i for i, c in enumerate(clusters) if c == local), -1) if local_first and local else -1
    assert combine._merge_plain is not None
    by_c = combine._merge_plain(query.wire, query.question_end,
                                combine._OPT_RECORDS[query.do] if query.edns else b"",
                                answers, queries, local_index, combine._PLAIN_TYPES)
    with PythonOnly():
        resp, replies = merge_answers(query, answers, queries, links, MERGED, local, local_first)
    return by_c, (resp, replies is None)


def check(query: Query, answers: list[Answer], local: str | None = None, local_first: bool = False) -> bytes | None:
    clusters = CLUSTERS[:len(answers)]
    by_c, (by_python, plain) = merged_both_ways(query, answers, local, local_first, clusters)
    if by_c is None:
        assert not plain, "the helper declined answers the Python code merges from their records"
    else:
        assert plain, "the helper merged answers the Python code reads whole"
        assert by_c == by_python
    # And merge_answers as the handler calls it (the helper first) gives the Python code's bytes.
    queries = cluster_queries(query, len(MERGED), [(ZONE, ZONE)] * len(answers))
    assert merge_answers(query, answers, queries, [(c, ZONE, None) for c in clusters], MERGED, local,
                         local_first)[0] == by_python
    return by_c


def client_query(name: str, rdtype: str, edns: bool, do: bool, rd: bool) -> Query:
    q = dns.message.make_query(name, rdtype, use_edns=0 if edns else False, want_dnssec=do)
    if not rd:
        q.flags &= ~dns.flags.RD
    parsed = parse_query(q.to_wire())
    assert parsed is not None
    return parsed


def answer(asked: str, rdtype: str, rcode: int, records: list[tuple[str, int, str, str]], edns: bool) -> bytes:
    m = dns.message.make_response(dns.message.make_query(asked, rdtype, use_edns=0 if edns else False))
    m.set_rcode(rcode)
    for owner, ttl, rtype, rdata in records:
        m.answer.append(dns.rrset.from_text(owner, ttl, "IN", rtype, rdata))
    return m.to_wire()


@st.composite
def plain_case(draw: st.DrawFn) -> tuple[Query, list[Answer], str | None, bool]:
    rel = draw(st.sampled_from(["web.shop.svc", "Web.Shop.svc", "x"]))
    qtype = draw(st.sampled_from(sorted(RDATA)))
    query = client_query(f"{rel}.{draw(st.sampled_from(['cluster.all.', 'CLUSTER.ALL.']))}", qtype,
                         draw(st.booleans()), draw(st.booleans()), draw(st.booleans()))
    asked = f"{rel}.cluster.local."
    owners = st.sampled_from([asked, asked.upper(), asked.lower()])
    record = st.sampled_from(sorted(RDATA)).flatmap(lambda t: st.tuples(
        owners, st.sampled_from([0, 5, 30, 2**31 - 1]), st.just(t), st.sampled_from(RDATA[t])))
    answers: list[Answer] = []
    for _ in range(draw(st.integers(1, 4))):
        rcode = draw(st.sampled_from([dns.rcode.NOERROR] * 4 + [dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL]))
        answers.append(answer(asked, qtype, rcode, draw(st.lists(record, max_size=4)), draw(st.booleans())))
    return query, answers, draw(st.sampled_from([None, *CLUSTERS])), draw(st.booleans())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain_case())
def test_the_helper_merges_what_python_merges_from_the_records_to_the_same_bytes(
        case: tuple[Query, list[Answer], str | None, bool]) -> None:
    check(*case)


def mangled(wire: bytes, where: int, junk: bytes, cut: int) -> bytes:
    where = min(where, len(wire) - 1)
    out = wire[:where] + junk + wire[where + len(junk):]
    return out[:len(out) + cut] if cut < 0 else out + junk[:cut]


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain_case(), st.integers(0, 3), st.integers(0, 120), st.binary(min_size=1, max_size=3), st.integers(-3, 3))
def test_mangled_answers_are_declined_or_merged_alike(case: tuple[Query, list[Answer], str | None, bool],
                                                      which: int, where: int, junk: bytes, cut: int) -> None:
    query, answers, local, local_first = case
    which = min(which, len(answers) - 1)
    answers[which] = mangled(answers[which], where, junk, cut)  # type: ignore[arg-type]  # (bytes)
    check(query, answers, local, local_first)


def three_plain_answers(records_each: int) -> Iterator[bytes]:
    for cluster in range(3):
        yield answer("web.cluster.local.", "A", dns.rcode.NOERROR,
                     [("web.cluster.local.", 30 - cluster, "A", f"10.{cluster}.0.{i}") for i in range(records_each)],
                     False)


def test_the_common_case_is_the_helpers() -> None:
    query = client_query("web.cluster.all.", "A", True, False, True)
    by_c = check(query, list(three_plain_answers(1)))
    assert by_c is not None
    m = dns.message.from_wire(by_c)
    assert [(rrset.ttl, sorted(r.to_text() for r in rrset)) for rrset in m.answer] == [
        (28, ["10.0.0.0", "10.1.0.0", "10.2.0.0"])]
    assert m.flags & dns.flags.AA and m.edns == 0


def test_many_records_are_left_to_python() -> None:
    # Past the helper's bound (64 records) the Python code merges, to the bytes it always gave.
    query = client_query("web.cluster.all.", "A", False, False, True)
    assert check(query, list(three_plain_answers(21))) is not None
    answers: list[Answer] = list(three_plain_answers(22))
    by_c, (by_python, plain) = merged_both_ways(query, answers, None, False, CLUSTERS[:3])
    assert by_c is None and plain
    assert struct.unpack("!H", by_python[6:8])[0] == 66
    queries = cluster_queries(query, len(MERGED), [(ZONE, ZONE)] * 3)
    assert merge_answers(query, answers, queries, [(c, ZONE, None) for c in CLUSTERS[:3]], MERGED)[0] == by_python


def test_local_first_takes_the_local_answer_alone() -> None:
    query = client_query("web.cluster.all.", "A", False, False, True)
    answers: list[Answer] = list(three_plain_answers(1))
    by_c = check(query, answers, local="west", local_first=True)
    assert by_c is not None
    assert [r.to_text() for rrset in dns.message.from_wire(by_c).answer for r in rrset] == ["10.1.0.0"]
    # The local cluster without data: the union of the others.
    answers[1] = answer("web.cluster.local.", "A", dns.rcode.NXDOMAIN, [], False)
    assert check(query, answers, local="west", local_first=True) is not None


def test_an_address_of_the_wrong_length_is_declined_in_class_in_only() -> None:
    query = client_query("web.cluster.all.", "A", False, False, True)
    good = next(three_plain_answers(1))
    assert good.endswith(b"\x00\x04\x0a\x00\x00\x00")  # the one A record's RDLENGTH and address
    five = good[:-6] + b"\x00\x05\x0a\x00\x00\x00\x01"
    assert check(query, [five, good]) is None  # an A of class IN is 4 bytes: not plain
    # In another class an A's rdata is opaque (as dnspython reads it): plain.
    chaos = five[:-13] + b"\x00\x03" + five[-11:]
    assert check(query, [chaos, good]) is not None
