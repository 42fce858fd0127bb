"""Per-name state is bounded and forgotten oldest first, one entry per insert (issue 19: a fuzz
grew RSS from 61 to 177 MB, and tables cleared whole when full stalled the loop): the query
parse memo, the refusals and the zone matches of every ZoneSet (the template tables:
tests/plugin/test_template_bounds.py)."""

from __future__ import annotations

import dns.message
import dns.rcode
import pytest

from interkube.dns import names, wire
from interkube.dns.memo import Memo
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


def test_refusals_are_bounded_and_kept_without_their_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
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
