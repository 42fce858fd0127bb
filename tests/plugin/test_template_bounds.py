"""Template tables are bounded, oldest first, and their entries that answer nothing (NXDOMAIN,
NODATA, PASS: one per query in a flood of random names or types) have a smaller bound of their
own (issue 19)."""

from __future__ import annotations

import dns.message
import dns.rcode
import dns.rrset
import pytest

from interkube.dns import wire
from interkube.plugin.answers import PASS, DependentTemplateTable, Entry, TemplateTable


def template(rcode: dns.rcode.Rcode = dns.rcode.NOERROR, answers: int = 1) -> wire.Template:
    q = dns.message.make_query("x.memo.test.", "A")
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    if answers:
        r.answer.append(dns.rrset.from_text("x.memo.test.", 60, "IN", "A", "192.0.2.1"))
    wire_q = q.to_wire()
    parsed = wire.parse_query(wire_q)
    assert parsed is not None
    return wire.template_for(r.to_wire(), parsed)


@pytest.mark.parametrize("table_type", [TemplateTable, DependentTemplateTable])
def test_entries_that_answer_nothing_have_a_bound_of_their_own(table_type: type[TemplateTable]) -> None:
    table = table_type(capacity=1000, per_query_capacity=5)
    positive = template()
    negatives: list[Entry] = [template(dns.rcode.NXDOMAIN, 0), template(answers=0), PASS]  # NXDOMAIN, NODATA, pass
    for i in range(30):
        table.put(b"pos%d" % i, positive)
        table.put(b"neg%d" % i, negatives[i % 3])
    assert all(table.get(b"pos%d" % i) is positive for i in range(30))
    assert [i for i in range(30) if table.get(b"neg%d" % i) is not None] == list(range(25, 30))
    assert len(table) == 35


def test_a_forgotten_negative_takes_its_dependencies_along() -> None:
    table = DependentTemplateTable(capacity=1000, per_query_capacity=2)
    for i in range(4):
        table.put(b"neg%d" % i, PASS, deps=[("svc", i)])
    assert [table.dependents(("svc", i)) for i in range(4)] == [0, 0, 1, 1]


@pytest.mark.parametrize("table_type", [TemplateTable, DependentTemplateTable])
def test_answers_synthesized_for_the_asked_name_are_bounded_with_those_that_answer_nothing(
        table_type: type[TemplateTable]) -> None:
    table = table_type(capacity=1000, per_query_capacity=5)
    positive = template()
    for i in range(30):
        table.put(b"data%d" % i, positive)
        table.put(b"wild%d" % i, template(), synthesized=True)  # (an answer with data, made up)
        table.put(b"neg%d" % i, PASS)
    assert all(table.get(b"data%d" % i) is positive for i in range(30))
    kept = [key for i in range(30) for key in (b"wild%d" % i, b"neg%d" % i) if table.get(key) is not None]
    assert kept == [b"neg27", b"wild28", b"neg28", b"wild29", b"neg29"]


def test_a_key_answered_otherwise_since_is_kept() -> None:
    table = TemplateTable(capacity=1000, per_query_capacity=2)
    positive = template()
    table.put(b"key", PASS)
    table.put(b"key", positive)  # (the pass forgotten meanwhile, then the key answered with data)
    for i in range(5):
        table.put(b"neg%d" % i, PASS)
    assert table.get(b"key") is positive
    assert len(table) == 3
