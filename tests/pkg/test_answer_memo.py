"""The C answer memo (``interkube._udpfast``'s Stamp and AnswerMemo) and drain_shed's memo argument.

An AnswerMemo keeps, for a UDP query's bytes after its ID, the response the fast path gave, with
the Stamp that says how long it holds; the listener's C drain answers a datagram it has without
calling into Python. What must never happen: an answer sent for other bytes than the ones it was
put for, with another ID than the query's, after its stamp (or a parent) stopped holding, or
memory (entries, stamps' references) growing past the memo's capacity.
"""

from __future__ import annotations

import contextlib
import math
import socket
import struct
import sys
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rrset
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from interkube.pkg.datagrams import AnswerMemo, Stamp
from testkit.waiting import wait_until

_udpfast: Any = pytest.importorskip("interkube._udpfast", reason="interkube._udpfast is not built")
new_stamp: Callable[..., Stamp] = _udpfast.Stamp
new_memo: Callable[[int], AnswerMemo] = _udpfast.AnswerMemo

#: A memo of this capacity is one set: every key competes with every other (so a lookup that
#: matched on less than the whole key would find another key's answer).
ONE_SET = 4


def query(name: str = "svc.example.", rdtype: str = "A", qid: int = 0x1234, *, rd: bool = True,
          options: list[dns.edns.Option] | None = None) -> bytes:
    """A query's wire bytes as a client sends them (EDNS when ``options`` is given)."""
    msg = dns.message.make_query(name, rdtype, use_edns=0 if options is not None else False,
                                 options=options or [])
    msg.id = qid
    if not rd:
        msg.flags &= ~dns.flags.RD
    return msg.to_wire()


def answer(wire: bytes, address: str = "10.0.0.1", qid: int | None = None) -> bytes:
    """A response to ``wire`` with one A record (and ``qid`` as its ID when given)."""
    msg = dns.message.from_wire(wire)
    resp = dns.message.make_response(msg)
    resp.answer.append(dns.rrset.from_text(msg.question[0].name, 30, "IN", "A", address))
    if qid is not None:
        resp.id = qid
    return resp.to_wire()


def with_id(wire: bytes, qid: int) -> bytes:
    return struct.pack("!H", qid) + wire[2:]


def sent_for(query_wire: bytes, response: bytes) -> bytes:
    """What the memo must send for ``query_wire``: its ID, then the kept response after its ID."""
    return query_wire[:2] + response[2:]


# ---- put and get ---------------------------------------------------------------------------


def test_a_hit_is_the_kept_response_with_the_querys_own_id() -> None:
    memo = new_memo(16)
    q = query(qid=0x1111)
    resp = answer(q, qid=0x7777)  # (another ID than either query's: the ID sent is the query's)
    assert memo.put(q, resp, new_stamp()) and len(memo) == 1
    asked = with_id(q, 0xBEEF)
    assert memo.get(asked) == b"\xbe\xef" + resp[2:]
    assert memo.get(with_id(q, 0x0000)) == b"\x00\x00" + resp[2:]
    assert memo.hits == 2


def test_a_key_differing_by_one_byte_anywhere_after_the_id_misses() -> None:
    memo = new_memo(ONE_SET)
    q = query(options=[dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"\x01" * 8)])
    assert memo.put(q, answer(q), new_stamp())
    for at in range(2, len(q)):
        for bit in (0x01, 0x20, 0x80):
            changed = q[:at] + bytes([q[at] ^ bit]) + q[at + 1:]
            assert memo.get(changed) is None, f"byte {at} ^ {bit:#x}"
    assert memo.get(q[:-1]) is None and memo.get(q + b"\x00") is None
    assert memo.get(with_id(q, 0x4321)) is not None and memo.hits == 1


@pytest.mark.parametrize("other", [
    pytest.param(query(rd=False), id="flags"),
    pytest.param(query("SVC.example."), id="letter-case"),
    pytest.param(query(rdtype="AAAA"), id="type"),
    pytest.param(query(options=[]), id="edns"),
    pytest.param(query(options=[dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"\x02" * 8)]),
                 id="edns-option"),
])
def test_queries_a_server_may_answer_differently_are_other_keys(other: bytes) -> None:
    """Each is a different question to the chain (a name's case comes back in the answer, an
    option changes the OPT record): the answer put for the plain query is not theirs."""
    memo = new_memo(ONE_SET)
    plain = query()
    assert memo.put(plain, answer(plain), new_stamp())
    assert memo.get(other) is None
    assert memo.put(other, answer(other, "10.9.9.9"), new_stamp())
    assert memo.get(other) == sent_for(other, answer(other, "10.9.9.9"))
    assert memo.get(plain) == sent_for(plain, answer(plain))


def test_a_response_bit_is_part_of_the_key() -> None:
    memo = new_memo(ONE_SET)
    q = query()
    assert memo.put(q, answer(q), new_stamp())
    assert memo.get(q[:2] + bytes([q[2] | 0x80]) + q[3:]) is None


def test_datagrams_shorter_than_a_header_and_a_byte_are_neither_kept_nor_found() -> None:
    memo = new_memo(ONE_SET)
    stamp = new_stamp()
    header = b"\x12\x34" + b"\x01\x00" + b"\x00" * 8
    assert not memo.put(header, header, stamp)
    assert memo.put(header + b"\x00", header, stamp)  # 13 bytes: the shortest kept
    assert memo.get(header + b"\x00") == header
    for short in (b"", b"\x12", b"\x12\x34", header[:11], header):
        assert memo.get(short) is None
    assert len(memo) == 1


# ---- stamps --------------------------------------------------------------------------------


def test_a_revoked_stamp_sends_nothing_more_and_its_entries_go_when_found() -> None:
    memo = new_memo(16)
    stamp, other = new_stamp(), new_stamp()
    q1, q2 = query("one.example."), query("two.example.")
    assert memo.put(q1, answer(q1), stamp) and memo.put(q2, answer(q2), other)
    assert stamp.live
    stamp.revoke()
    assert not stamp.live
    assert memo.get(q1) is None and len(memo) == 1  # (forgotten when found)
    assert memo.get(q2) == sent_for(q2, answer(q2))
    assert not memo.put(q1, answer(q1), stamp) and len(memo) == 1


@pytest.mark.parametrize("revoked", ["root", "middle"])
def test_revoking_a_parent_stops_every_stamp_below_it(revoked: str) -> None:
    """A table's stamp over its templates' stamps: retiring the table (a reload, a new
    generation) stops every answer its templates gave, two levels down as well as one."""
    root = new_stamp()
    middle, sibling = new_stamp(root), new_stamp(root)
    leaf = new_stamp(middle)
    memo = new_memo(16)
    under_leaf, under_middle, under_sibling = query("leaf.example."), query("middle.example."), query("sib.example.")
    for q, stamp in ((under_leaf, leaf), (under_middle, middle), (under_sibling, sibling)):
        assert memo.put(q, answer(q), stamp)
    {"root": root, "middle": middle}[revoked].revoke()
    assert not leaf.live and not middle.live
    assert memo.get(under_leaf) is None and memo.get(under_middle) is None
    if revoked == "middle":
        assert root.live and sibling.live
        assert memo.get(under_sibling) == sent_for(under_sibling, answer(under_sibling))
    else:
        assert not sibling.live and memo.get(under_sibling) is None
    assert not memo.put(under_leaf, answer(under_leaf), leaf)


def test_a_stamp_holds_until_its_until_and_every_parents() -> None:
    memo = new_memo(16)
    q = query()
    past = time.monotonic() - 1
    assert new_stamp(None, math.inf).until == math.inf and new_stamp().live
    assert new_stamp(None, past).until == past
    assert not new_stamp(None, past).live and not new_stamp(new_stamp(None, past)).live
    assert not memo.put(q, answer(q), new_stamp(None, past))
    assert not memo.put(q, answer(q), new_stamp(new_stamp(None, past), math.inf))
    assert len(memo) == 0
    later = new_stamp(new_stamp(None, time.monotonic() + 3600))
    assert later.live and memo.put(q, answer(q), later) and memo.get(q) == sent_for(q, answer(q))


def test_an_answer_stops_being_sent_when_its_stamps_until_passes() -> None:
    """A cache entry's stamp holds until the entry's expiry: the memo stops sending it then,
    without anything revoking it (here the until is a parent's, as a child's always checks)."""
    memo = new_memo(16)
    q = query()
    for _ in range(10):  # (again only where this machine stalled past the until meanwhile)
        until = time.monotonic() + 0.2
        expiring = new_stamp(new_stamp(None, until))
        kept = memo.put(q, answer(q), expiring)
        got = memo.get(q)
        if time.monotonic() < until:
            break
    assert kept and got == sent_for(q, answer(q))
    wait_until(lambda: not expiring.live, "the stamp's until passed")
    assert time.monotonic() >= until
    assert memo.get(q) is None and len(memo) == 0
    assert not memo.put(q, answer(q), expiring)


def test_each_hit_counts_in_every_counter_on_the_way_to_the_root() -> None:
    """A cache's hits count (array('q'), one slot per kind) takes the memo's hits as its own."""
    outer, inner = array("q", [0, 0, 0]), array("q", [0, 0])
    root = new_stamp(None, math.inf, outer, 2)
    middle = new_stamp(root, math.inf, inner, 1)
    leaf = new_stamp(middle)  # (no counter of its own)
    memo = new_memo(16)
    q = query()
    assert memo.put(q, answer(q), leaf)
    for qid in range(3):
        assert memo.get(with_id(q, qid)) is not None
    assert memo.get(query("miss.example.")) is None
    assert outer.tolist() == [0, 0, 3] and inner.tolist() == [0, 3] and memo.hits == 3
    root.revoke()
    assert memo.get(q) is None
    assert outer.tolist() == [0, 0, 3] and inner.tolist() == [0, 3] and memo.hits == 3


def test_a_counter_may_be_an_array_of_64_bit_ints_of_either_type_code() -> None:
    for code in ("q", "l"):
        counter = array(code, [0])
        memo = new_memo(ONE_SET)
        q = query()
        assert memo.put(q, answer(q), new_stamp(None, math.inf, counter, 0))
        assert memo.get(q) is not None and counter[0] == 1


@pytest.mark.parametrize(("kwargs", "error"), [
    pytest.param({"counter": array("i", [0])}, ValueError, id="32-bit"),
    pytest.param({"counter": array("d", [0])}, ValueError, id="floats"),
    pytest.param({"counter": array("Q", [0])}, ValueError, id="unsigned"),
    pytest.param({"counter": bytearray(8)}, ValueError, id="bytes"),
    pytest.param({"counter": array("q")}, ValueError, id="empty"),
    pytest.param({"counter": array("q", [0, 0]), "slot": 2}, ValueError, id="slot-past-the-end"),
    pytest.param({"counter": array("q", [0, 0]), "slot": -1}, ValueError, id="negative-slot"),
    pytest.param({"counter": [0]}, TypeError, id="no-buffer"),
    pytest.param({"counter": b"\x00" * 8}, ValueError, id="read-only"),
    pytest.param({"counter": array("q", [0]), "slot": "0"}, TypeError, id="slot-not-int"),
    pytest.param({"parent": object()}, TypeError, id="parent-not-a-stamp"),
    pytest.param({"until": "soon"}, TypeError, id="until-not-a-number"),
])
def test_bad_stamp_arguments_are_refused(kwargs: dict[str, Any], error: type[Exception]) -> None:
    counter = kwargs.get("counter")
    with pytest.raises(error):
        new_stamp(**kwargs)
    if isinstance(counter, array):
        counter.append(0)  # (the refused stamp let go of the counter's buffer: the array can grow)


# ---- bounds --------------------------------------------------------------------------------


@pytest.mark.parametrize(("asked", "capacity"), [(-1, 4), (0, 4), (1, 4), (4, 4), (5, 8), (100, 128)])
def test_the_capacity_is_a_power_of_two_of_at_least_one_set(asked: int, capacity: int) -> None:
    assert new_memo(asked).capacity == capacity
    memo = new_memo(ONE_SET)
    memo.resize(asked)
    assert memo.capacity == capacity


def test_more_keys_than_the_capacity_never_hold_more_than_the_capacity() -> None:
    memo = new_memo(16)
    stamp = new_stamp()
    queries = [query(f"name{i}.example.") for i in range(500)]
    for q in queries:
        assert memo.put(q, answer(q), stamp)
        assert len(memo) <= 16
    assert len(memo) == 16  # (every set filled)
    found = [q for q in queries if memo.get(q) is not None]
    assert len(found) == 16
    assert all(memo.get(q) == sent_for(q, answer(q)) for q in found)


def test_a_full_set_gives_one_place_to_a_new_key() -> None:
    memo = new_memo(ONE_SET)
    stamp = new_stamp()
    names = [query(f"n{i}.example.") for i in range(5)]
    for q in names[:4]:  # (empty places first: all four kept)
        assert memo.put(q, answer(q), stamp)
    assert all(memo.get(q) == sent_for(q, answer(q)) for q in names[:4])
    assert memo.put(names[4], answer(names[4]), stamp)
    assert len(memo) == 4 and memo.get(names[4]) == sent_for(names[4], answer(names[4]))
    assert sum(memo.get(q) is None for q in names[:4]) == 1


def test_names_asked_in_turn_more_than_a_set_holds_each_find_their_answer_at_times() -> None:
    """Five names asked in turn, again and again, for a set of four, each put when missed (as the
    fast path does): a set that gave up the oldest (or always the same place) would have some
    names never found."""
    memo = new_memo(ONE_SET)
    stamp = new_stamp()
    names = [query(f"n{i}.example.") for i in range(5)]
    found = [0] * len(names)
    for _ in range(200):
        for i, q in enumerate(names):
            if memo.get(q) is None:
                assert memo.put(q, answer(q), stamp)
            else:
                found[i] += 1
    assert all(found), found


def test_an_entry_that_no_longer_holds_gives_its_place_before_any_live_one() -> None:
    """Round after round in a full set, the entry whose stamp was revoked goes (found since or
    not), every live one stays."""
    memo = new_memo(ONE_SET)
    live: dict[bytes, Stamp] = {}
    for i in range(40):
        q, stamp = query(f"n{i}.example."), new_stamp()
        assert memo.put(q, answer(q), stamp)
        live[q] = stamp
        assert len(memo) == len(live) and all(memo.get(k) == sent_for(k, answer(k)) for k in live)
        if len(live) == ONE_SET:
            victim = list(live)[i % ONE_SET]
            live.pop(victim).revoke()
            if i % 2:
                assert memo.get(victim) is None


def test_an_entry_past_its_until_gives_its_place_before_any_live_one() -> None:
    memo = new_memo(ONE_SET)
    expiring = [query(f"old{i}.example.") for i in range(3)]
    stays, new = query("stays.example."), [query(f"new{i}.example.") for i in range(3)]
    for _ in range(10):  # (again only where this machine stalled past the until before the puts)
        memo.clear()
        short = new_stamp(None, time.monotonic() + 0.2)
        if all([memo.put(q, answer(q), short) for q in expiring]):
            break
    assert len(memo) == 3 and memo.put(stays, answer(stays), new_stamp())
    wait_until(lambda: not short.live, "the stamp's until passed")
    for q in new:
        assert memo.put(q, answer(q), new_stamp())
    assert len(memo) == 4 and all(memo.get(q) == sent_for(q, answer(q)) for q in [stays, *new])


def test_putting_the_same_key_again_replaces_its_answer() -> None:
    memo = new_memo(ONE_SET)
    q = query()
    first, second = answer(q, "10.0.0.1"), answer(q, "10.0.0.2")
    assert memo.put(q, first, new_stamp())
    assert memo.put(with_id(q, 0x9999), second, new_stamp())  # (another ID: the same key)
    assert len(memo) == 1 and memo.get(q) == sent_for(q, second)


def test_a_put_with_a_stamp_that_does_not_hold_leaves_the_answer_there() -> None:
    memo = new_memo(ONE_SET)
    q = query()
    dead = new_stamp()
    dead.revoke()
    assert memo.put(q, answer(q), new_stamp())
    assert not memo.put(q, answer(q, "10.6.6.6"), dead)
    assert memo.get(q) == sent_for(q, answer(q))


@pytest.mark.parametrize("forget", ["clear", "resize", "resize-same"])
def test_clear_and_resize_forget_every_answer(forget: str) -> None:
    memo = new_memo(16)
    stamp = new_stamp()
    names = [query(f"n{i}.example.") for i in range(8)]
    for q in names:
        memo.put(q, answer(q), stamp)
    assert len(memo) > 0
    if forget == "clear":
        memo.clear()
    else:
        memo.resize(64 if forget == "resize" else 16)
    assert len(memo) == 0 and all(memo.get(q) is None for q in names)
    assert memo.put(names[0], answer(names[0]), stamp) and memo.get(names[0]) is not None


def test_queries_and_responses_past_the_bounds_are_not_kept() -> None:
    """Keys up to 512 bytes (a name, a question and an OPT with options) and responses up to a
    datagram the drain sends (4096 bytes)."""
    memo = new_memo(16)
    stamp = new_stamp()
    head = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    longest = head + b"k" * (514 - len(head))  # 512 bytes after the ID
    reply = head + b"r" * 20
    assert not memo.put(longest + b"k", reply, stamp) and memo.get(longest + b"k") is None
    assert memo.put(longest, reply, stamp) and memo.get(longest) == reply
    q = query()
    assert not memo.put(q, head[:11], stamp)
    assert not memo.put(q, head + b"r" * (4097 - len(head)), stamp) and memo.get(q) is None
    biggest = head + b"r" * (4096 - len(head))
    assert memo.put(q, biggest, stamp) and memo.get(q) == q[:2] + biggest[2:]
    assert memo.put(q, head, stamp) and memo.get(q) == q[:2] + head[2:]  # (12 bytes: a header alone)
    assert len(memo) == 2


def test_bad_put_and_get_arguments_are_refused() -> None:
    memo = new_memo(ONE_SET)
    q = query()
    for args in ((q, answer(q)), (q, answer(q), object()), (bytearray(q), answer(q), new_stamp()),
                 (q, memoryview(answer(q)), new_stamp())):
        with pytest.raises(TypeError):
            memo.put(*args)
    with pytest.raises(TypeError):
        memo.get(bytearray(q))  # type: ignore[arg-type]
    assert len(memo) == 0


# ---- memory --------------------------------------------------------------------------------


def test_the_memo_holds_one_reference_per_entry_and_gives_each_back() -> None:
    stamps = [new_stamp() for _ in range(3)]

    def refs() -> list[int]:
        return [sys.getrefcount(stamps[i]) for i in range(len(stamps))]

    start = refs()

    def held() -> list[int]:
        return [now - before for now, before in zip(refs(), start, strict=True)]

    memo = new_memo(ONE_SET)
    names = [query(f"n{i}.example.") for i in range(12)]
    for step in ("clear", "resize", "del"):
        memo = new_memo(ONE_SET) if step == "clear" else memo
        memo.put(names[0], answer(names[0]), stamps[0])
        memo.put(names[1], answer(names[1]), stamps[0])
        memo.put(names[2], answer(names[2]), stamps[1])
        assert held() == [2, 1, 0]
        memo.put(names[0], answer(names[0]), stamps[2])  # (replaced)
        assert held() == [1, 1, 1]
        if step == "clear":
            memo.clear()
        elif step == "resize":
            memo.resize(8)
            assert memo.capacity == 8
            memo.resize(ONE_SET)
        else:
            del memo
        assert held() == [0, 0, 0], step
    memo = new_memo(ONE_SET)
    for i, q in enumerate(names):  # (the set is full from the fifth on: one goes for each new one)
        memo.put(q, answer(q), stamps[i % 3])
        assert sum(held()) == len(memo) == min(i + 1, ONE_SET)
    for i in range(len(stamps)):  # (by index: a loop variable would hold a reference)
        stamps[i].revoke()
    assert all(memo.get(q) is None for q in names)  # (found no longer holding: forgotten)
    assert held() == [0, 0, 0] and len(memo) == 0


def test_a_stamp_lets_go_of_its_parent_and_its_counter_when_it_goes() -> None:
    counter = array("q", [0])
    parent = new_stamp()
    start = sys.getrefcount(parent)
    child = new_stamp(parent, math.inf, counter, 0)
    assert sys.getrefcount(parent) == start + 1
    with pytest.raises(BufferError):
        counter.append(0)  # (the stamp holds the counter's buffer: the array cannot move)
    memo = new_memo(ONE_SET)
    memo.put(query(), answer(query()), child)
    del child
    with pytest.raises(BufferError):
        counter.append(0)  # (the memo's entry keeps the stamp alive)
    del memo
    counter.append(0)
    assert sys.getrefcount(parent) == start


# ---- a model of what get may return --------------------------------------------------------

#: Keys the machine puts: of one length, each differing from another in one byte, so that
#: any lookup matching on less than every byte finds another key's answer.
MODEL_KEYS = [query(f"n{i}.example.", qid=0) for i in range(6)] + \
    [query(f"n{i}.example.", qid=0, rd=False) for i in range(3)] + [query("long-name.example.", qid=0)]
MODEL_RESPONSES = [b"\xab\xcd" + bytes([0x80 | j]) * (10 + 37 * j) for j in range(5)]
MODEL_SLOTS = 64


class MemoModel(RuleBasedStateMachine):
    """Random puts, gets, revokes, clears and resizes against what the memo may answer: for a
    key, either nothing or exactly the last response accepted for it, while its stamp holds;
    and no more entries than the capacity, or than the keys put since the last clear."""

    def __init__(self) -> None:
        super().__init__()
        self.memo = new_memo(ONE_SET)
        self.counter = array("q", [0] * MODEL_SLOTS)
        self.counts = [0] * MODEL_SLOTS
        self.stamps: list[Stamp] = []
        self.parents: list[int | None] = []
        self.slots: list[int | None] = []
        self.dead: list[bool] = []  # (revoked, or an until in the past)
        self.refs: list[int] = []  # each stamp's references without the memo's
        self.kept: dict[int, tuple[bytes, int]] = {}  # key -> (response, stamp) accepted last
        self.put_since_clear: set[int] = set()
        self.hits = 0
        self.make_stamp(None, False, False)

    def holds(self, s: int | None) -> bool:
        while s is not None:
            if self.dead[s]:
                return False
            s = self.parents[s]
        return True

    @precondition(lambda self: len(self.stamps) < MODEL_SLOTS)
    @rule(parent=st.integers(0, MODEL_SLOTS), expired=st.booleans(), counted=st.booleans())
    def make_stamp(self, parent: int | None, expired: bool, counted: bool) -> None:
        if parent is not None:
            parent = parent % (len(self.stamps) + 1)
            parent = None if parent == len(self.stamps) else parent
        index = len(self.stamps)
        slot = index if counted else None
        self.stamps.append(new_stamp(None if parent is None else self.stamps[parent], -1.0 if expired else math.inf,
                                     None if slot is None else self.counter, slot or 0))
        self.parents.append(parent)
        self.slots.append(slot)
        self.dead.append(expired)
        self.refs.append(sys.getrefcount(self.stamps[index]))
        if parent is not None:
            self.refs[parent] += 1

    @rule(key=st.integers(0, len(MODEL_KEYS) - 1), response=st.integers(0, len(MODEL_RESPONSES) - 1),
          stamp=st.integers(0, MODEL_SLOTS))
    def put(self, key: int, response: int, stamp: int) -> None:
        stamp %= len(self.stamps)
        kept = self.memo.put(MODEL_KEYS[key], MODEL_RESPONSES[response], self.stamps[stamp])
        assert kept == self.holds(stamp)
        if kept:
            self.kept[key] = (MODEL_RESPONSES[response], stamp)
            self.put_since_clear.add(key)

    @rule(key=st.integers(0, len(MODEL_KEYS) - 1), qid=st.integers(0, 0xFFFF))
    def get(self, key: int, qid: int) -> None:
        got = self.memo.get(with_id(MODEL_KEYS[key], qid))
        if got is None:
            # Evicted or no longer holding: gone until put again. (With no more keys than a set
            # holds since the last clear, nothing was evicted: a live answer is found.)
            kept = self.kept.pop(key, None)
            assert kept is None or not self.holds(kept[1]) or len(self.put_since_clear) > ONE_SET
            return
        assert key in self.kept, "an answer for a key never put (or forgotten since)"
        response, stamp = self.kept[key]
        assert self.holds(stamp), "an answer whose stamp no longer holds"
        assert got == struct.pack("!H", qid) + response[2:]
        self.hits += 1
        s: int | None = stamp
        while s is not None:
            slot = self.slots[s]
            if slot is not None:
                self.counts[slot] += 1
            s = self.parents[s]

    @rule(stamp=st.integers(0, MODEL_SLOTS))
    def revoke(self, stamp: int) -> None:
        stamp %= len(self.stamps)
        self.stamps[stamp].revoke()
        self.dead[stamp] = True

    @rule()
    def clear(self) -> None:
        self.memo.clear()
        self.kept.clear()
        self.put_since_clear.clear()

    @rule(capacity=st.sampled_from([1, 4, 8, 16]))
    def resize(self, capacity: int) -> None:
        self.memo.resize(capacity)
        self.kept.clear()
        self.put_since_clear.clear()

    @invariant()
    def bounded_and_counted(self) -> None:
        assert len(self.memo) <= min(self.memo.capacity, len(self.put_since_clear))
        assert self.memo.hits == self.hits
        assert self.counter.tolist() == self.counts
        assert [s.live for s in self.stamps] == [self.holds(i) for i in range(len(self.stamps))]

    def teardown(self) -> None:
        self.memo.clear()
        refs = [sys.getrefcount(self.stamps[i]) for i in range(len(self.stamps))]
        assert refs == self.refs, "a stamp's reference kept or lost"


MemoModel.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None,
                                       suppress_health_check=[HealthCheck.too_slow])
test_the_memo_answers_as_the_model_allows = MemoModel.TestCase


# ---- drain_shed with a memo ----------------------------------------------------------------


class Server:
    """A loopback UDP socket drained by drain_shed, answering misses with MISSED."""

    MISSED = "10.99.0.1"

    def __init__(self, sock: socket.socket, memo: AnswerMemo | None, *, shed_keys: set[bytes] | None = None,
                 backlog: int = 0) -> None:
        self.sock = sock
        self.memo = memo
        self.calls: list[tuple[bytes, Any]] = []
        self.keys = shed_keys or set()
        # A backlog holding `backlog` entries sheds the keys' datagrams from then on.
        self.backlog: deque[tuple[bytes, Any, float]] = deque([(b"", None, 0.0)] * backlog)
        self.limit = 64 if backlog else 0

    def callback(self, data: bytes, addr: Any) -> bytes | None:
        self.calls.append((data, addr))
        return None if data[2] & 0x80 else answer(data, self.MISSED)  # (a response: dropped)

    def read(self, memo_hits: Callable[[], int]) -> int:
        return memo_hits() + len(self.calls) + len(self.backlog)

    def serve(self, count: int, memo: AnswerMemo | None = None) -> None:
        """Drain until ``count`` more datagrams were read (answered from ``memo``, called back or
        shed), whatever batches they came in."""
        counted = memo if memo is not None else self.memo

        def hits() -> int:
            return 0 if counted is None else counted.hits

        want = self.read(hits) + count

        def drained() -> bool:
            _udpfast.drain_shed(self.sock.fileno(), self.callback, 4, self.keys, self.backlog, len(self.backlog)
                                if self.limit else 1, self.limit, self.memo)
            return self.read(hits) >= want

        wait_until(drained, f"{count} datagrams read")


@contextlib.contextmanager
def loopback(family: socket.AddressFamily = socket.AF_INET, clients: int = 1) -> Iterator[
        tuple[socket.socket, list[socket.socket]]]:
    """A non-blocking server socket and client sockets (reads time out after 5 s) on loopback."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(socket.socket(family, socket.SOCK_DGRAM))
        server.bind((host, 0))
        server.setblocking(False)
        made = []
        for _ in range(clients):
            c = stack.enter_context(socket.socket(family, socket.SOCK_DGRAM))
            c.bind((host, 0))
            c.connect(server.getsockname())
            c.settimeout(5)
            made.append(c)
        yield server, made


def nothing_more(sock: socket.socket) -> bool:
    """Whether nothing else waits in ``sock`` (what drain_shed sends is there when it returns)."""
    sock.setblocking(False)
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(5)
    return False


@pytest.mark.parametrize("backlog", [0, 4], ids=["plain", "shedding"])
def test_a_query_the_memo_has_is_answered_without_the_callback(backlog: int) -> None:
    """Shedding or not (the drain's two ways), the memo is looked up first: its answer goes out
    even where the query's key is one the backlog would take."""
    memo = new_memo(16)
    counter = array("q", [0])
    q = query(qid=1)
    response = answer(q, "10.0.0.7")
    assert memo.put(q, response, new_stamp(None, math.inf, counter, 0))
    with loopback() as (sock, [client]):
        server = Server(sock, memo, shed_keys={q[2:]}, backlog=backlog)
        client.send(with_id(q, 0xA1A1))
        server.serve(1)
        assert client.recv(4096) == b"\xa1\xa1" + response[2:] == memo.get(with_id(q, 0xA1A1))
        assert server.calls == [] and len(server.backlog) == backlog and counter[0] == 2
        assert nothing_more(client)


def test_a_query_the_memo_does_not_have_goes_to_the_callback() -> None:
    memo = new_memo(16)
    kept = query("kept.example.")
    assert memo.put(kept, answer(kept), new_stamp())
    with loopback() as (sock, [client]):
        server = Server(sock, memo)
        other = query("other.example.", qid=0x0B0B)
        client.send(other)
        server.serve(1)
        assert server.calls == [(other, client.getsockname())]
        assert client.recv(4096) == answer(other, Server.MISSED) and memo.hits == 0


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def test_hits_and_misses_read_together_each_get_their_answer(family: socket.AddressFamily) -> None:
    """Datagrams from two clients, sent before the drain reads any, hits and misses in turn:
    every answer goes to its own client with its own query's ID."""
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6")
    memo = new_memo(64)
    hits = [query(f"hit{i}.example.", qid=0) for i in range(6)]
    for i, q in enumerate(hits):
        assert memo.put(q, answer(q, f"10.0.1.{i}"), new_stamp())
    misses = [query(f"miss{i}.example.", qid=0) for i in range(6)]
    with loopback(family, clients=2) as (sock, clients):
        server = Server(sock, memo)
        expected: list[list[bytes]] = [[], []]
        sent = 0
        for i in range(6):
            for j, q in enumerate((hits[i], misses[i])):
                client = (i + j) % 2
                asked = with_id(q, 0x100 * i + 0x10 * j + client)
                clients[client].send(asked)
                expected[client].append(sent_for(asked, answer(q, f"10.0.1.{i}")) if j == 0 else
                                        answer(asked, Server.MISSED))
                sent += 1
        server.serve(sent)
        for receiver, want in zip(clients, expected, strict=True):
            assert sorted(receiver.recv(4096) for _ in want) == sorted(want)
            assert nothing_more(receiver)
        assert sorted(data for data, _ in server.calls) == sorted(
            with_id(q, 0x100 * i + 0x10 + (i + 1) % 2) for i, q in enumerate(misses))
        assert memo.hits == 6


def test_without_a_memo_every_query_goes_to_the_callback() -> None:
    memo = new_memo(16)
    q = query()
    assert memo.put(q, answer(q), new_stamp())
    with loopback() as (sock, [client]):
        server = Server(sock, None)
        client.send(q)
        server.serve(1, memo)
        assert server.calls == [(q, client.getsockname())] and memo.hits == 0
        assert client.recv(4096) == answer(q, Server.MISSED)


def test_a_query_whose_stamp_was_revoked_goes_to_the_callback() -> None:
    memo = new_memo(16)
    parent = new_stamp()
    q = query()
    assert memo.put(q, answer(q), new_stamp(parent))
    with loopback() as (sock, [client]):
        server = Server(sock, memo)
        client.send(q)
        server.serve(1)
        assert client.recv(4096) == sent_for(q, answer(q)) and server.calls == []
        parent.revoke()
        client.send(q)
        server.serve(1)
        assert server.calls == [(q, client.getsockname())]
        assert client.recv(4096) == answer(q, Server.MISSED) and len(memo) == 0


def test_a_response_datagram_is_never_answered_from_the_memo() -> None:
    """A datagram with QR set is not a query (a reflected or spoofed answer): even where the
    memo holds its exact bytes, it goes to the callback (which drops such datagrams)."""
    memo = new_memo(16)
    q = query()
    reflected = q[:2] + bytes([q[2] | 0x80]) + q[3:]
    assert memo.put(reflected, answer(q), new_stamp()) and memo.get(reflected) is not None
    with loopback() as (sock, [client]):
        server = Server(sock, memo)
        client.send(reflected)
        server.serve(1)
        assert server.calls == [(reflected, client.getsockname())] and memo.hits == 1


def test_drain_shed_takes_an_answer_memo_or_none_only() -> None:
    with loopback() as (sock, _):
        server = Server(sock, None)
        with pytest.raises(TypeError):
            _udpfast.drain_shed(sock.fileno(), server.callback, 4, set(), deque(), 1, 0, {})
        with pytest.raises(TypeError):
            _udpfast.drain_shed(sock.fileno(), server.callback, 4, set(), deque(), 1, 0)
