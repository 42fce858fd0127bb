"""Per-name state is bounded and forgotten oldest first, one entry per insert (issue 19: a fuzz
grew RSS from 61 to 177 MB, and tables cleared whole when full stalled the loop): the query
parse memo, the refusals and the zone matches of every ZoneSet (the template tables:
tests/plugin/test_template_bounds.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import dns.message
import dns.rcode
import pytest

from interkube.dns import names, wire
from interkube.dns.memo import SERVED_NAMES, Memo
from interkube.dns.names import ZoneSet, to_wire


def test_a_full_memo_forgets_its_oldest_entry_on_each_insert() -> None:
    memo: Memo[int, str] = Memo(3)
    for i in range(5):
        memo.remember(i, str(i))
    assert memo.table == {2: "2", 3: "3", 4: "4"}
    memo.remember(5, "5")
    assert list(memo.table) == [3, 4, 5]


def query(name: str, rdtype: str = "A") -> bytes:
    return dns.message.make_query(name, rdtype).to_wire()


def test_the_parse_memo_keeps_the_latest_queries_up_to_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire._MEMOS, "limit", 50)
    wires = [query(f"n{i}.memo.test.") for i in range(200)]
    for w in wires:
        assert wire.parse_query(w) is not None
    assert len(wire._MEMO) == 50
    assert all(w[2:] in wire._MEMO for w in wires[-50:])  # the newest, not a table started over
    assert not any(w[2:] in wire._MEMO for w in wires[:150])


def test_refusals_are_bounded_and_kept_without_their_tracebacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire._REFUSALS, "limit", 20)
    bad = []
    for i in range(60):
        w = bytearray(query(f"r{i}.memo.test.", "TXT"))
        w[11] = 2  # two additional records where there is none: malformed
        bad.append(bytes(w))
        assert wire.parse_query(bad[-1]) is None
        assert not isinstance(wire.admissible(bad[-1]), bytes)
    assert len(wire._REFUSED) == 20
    assert all(w[2:] in wire._REFUSED for w in bad[-20:])
    assert all(p.__traceback__ is None for p in wire._REFUSED.values())
    # Nor the IndexError each was raised from (``from None`` hides it, with its traceback, but
    # keeps it): nothing of the reader's frames stays with a refusal.
    assert all(p.__context__ is None for p in wire._REFUSED.values())


def test_zone_matches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(names, "_MEMO_LIMIT", 10)
    zones = ZoneSet(["example.org.", "cluster.local."])
    for i in range(100):
        assert zones.match(to_wire(f"n{i}.example.org.")) == "example.org."
        assert zones.match(to_wire(f"n{i}.other.")) is None
    assert len(zones._memo) == 10


def test_sets_that_answer_every_name_alike_keep_no_memo() -> None:
    root, empty = ZoneSet(["."]), ZoneSet([])
    for i in range(100):
        assert root.match(to_wire(f"n{i}.example.org.")) == "."
        assert empty.match(to_wire(f"n{i}.example.org.")) is None
    assert not root._memo and not empty._memo


class Holder:
    """Something holding names (a kubernetes stanza, in the server)."""


@pytest.fixture
def holder() -> Iterator[Holder]:
    held = Holder()
    yield held
    SERVED_NAMES.announce(held, 0)


def test_a_sized_memo_follows_the_names_served_between_its_bound_and_its_ceiling(holder: Holder) -> None:
    memo: Memo[int, int] = Memo(10, per_name=2, ceiling=100)
    others = SERVED_NAMES.total  # (holders still alive from other tests count too)
    SERVED_NAMES.announce(holder, 30)
    assert memo.limit == min(100, max(10, 2 * (others + 30)))
    SERVED_NAMES.announce(holder, 10_000)
    assert memo.limit == 100
    for i in range(500):
        memo.remember(i, i)
    assert len(memo) == 100 and list(memo.table) == list(range(400, 500))  # the ceiling holds
    SERVED_NAMES.announce(holder, 0)
    assert memo.limit == min(100, max(10, 2 * others))
    memo.remember(500, 500)
    assert len(memo) <= max(10, 2 * others)


def test_a_holder_that_is_gone_stops_counting() -> None:
    memo: Memo[int, int] = Memo(10, per_name=1, ceiling=10_000)
    others = SERVED_NAMES.total
    held = Holder()
    SERVED_NAMES.announce(held, 5_000)
    assert SERVED_NAMES.total == others + 5_000
    del held
    gc.collect()
    assert SERVED_NAMES.total == others
    SERVED_NAMES.announce(Holder(), 0)  # any announce resizes
    assert memo.limit == max(10, others)


def test_the_parse_memo_hits_when_the_names_served_are_asked_in_turn(monkeypatch: pytest.MonkeyPatch,
                                                                      holder: Holder) -> None:
    """More names asked in turn than the memo's own bound: with the served names announced, the
    second pass reads no query again (without sizing, oldest-first forgetting dropped each entry
    before its name came back: every query was parsed again)."""
    monkeypatch.setattr(wire._MEMOS, "base", 50)
    monkeypatch.setattr(wire._MEMOS, "limit", 50)
    wire._MEMOS.clear()
    parsed = []
    real = wire._parse_info
    monkeypatch.setattr(wire, "_parse_info", lambda w: parsed.append(w) or real(w))
    SERVED_NAMES.announce(holder, 100)
    wires = [query(f"n{i}.cyclic.test.") for i in range(150)]
    for w in wires:
        assert wire.parse_query(w) is not None
    assert len(parsed) == 150
    for w in wires:
        assert wire.parse_query(w) is not None
    assert len(parsed) == 150  # the second pass: every one a hit
    SERVED_NAMES.announce(holder, 0)
    wire.parse_query(query("one.more.test."))
    assert len(wire._MEMO) <= max(50, 2 * SERVED_NAMES.total)  # back to the bound, at once


def test_zone_matches_hit_when_the_names_served_are_asked_in_turn(monkeypatch: pytest.MonkeyPatch,
                                                                   holder: Holder) -> None:
    monkeypatch.setattr(names, "_MEMO_LIMIT", 10)
    zones = ZoneSet(["example.org.", "cluster.local."])
    walked = []
    real = names.label_offsets
    monkeypatch.setattr(names, "label_offsets", lambda n: walked.append(n) or real(n))
    SERVED_NAMES.announce(holder, 50)
    lnames = [to_wire(f"n{i}.example.org.") for i in range(60)]
    for _ in range(2):
        for lname in lnames:
            assert zones.match(lname) == "example.org."
    assert len(walked) == 60  # the second pass: every one a hit
