"""The prometheus plugin's tally in the C answer memo (``interkube._udpfast``).

``AnswerMemo.put(query, response, stamp, tally)`` keeps, with the answer, the plugin's entry for
it (an ``array('d')``: count, seconds, query bytes, response bytes); each answer the memo sends
adds to it what the plugin would have added had the answer gone through it, so /metrics shows
the same counts with the memo as without. What must never happen: a put that takes a tally it
cannot count into, an answer sent and not counted (or counted twice, or into another tally),
or a tally held after the memo forgot the answer.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Callable
from typing import Any

import pytest

from interkube.pkg.datagrams import AnswerMemo, Stamp
from tests.pkg.test_answer_memo import Server, answer, loopback, nothing_more, query, sent_for, with_id

_udpfast: Any = pytest.importorskip("interkube._udpfast", reason="interkube._udpfast is not built")
new_stamp: Callable[..., Stamp] = _udpfast.Stamp
new_memo: Callable[[int], AnswerMemo] = _udpfast.AnswerMemo

@pytest.mark.parametrize(("tally", "error"), [
    pytest.param(array("q", [0] * 4), ValueError, id="int64-format-q"),
    pytest.param(array("f", [0.0] * 8), ValueError, id="float32"),
    pytest.param(array("d", [0.0] * 3), ValueError, id="three-doubles"),
    pytest.param(bytearray(32), ValueError, id="bytearray"),
    pytest.param([0.0] * 4, TypeError, id="list"),
    pytest.param(b"\x00" * 32, (ValueError, TypeError), id="bytes"),
    pytest.param(memoryview(array("d", [0.0] * 4)).toreadonly(), (ValueError, TypeError), id="read-only-view"),
])
def test_a_tally_the_memo_cannot_count_into_is_refused(tally: object,
                                                       error: type[Exception] | tuple[type[Exception], ...]) -> None:
    memo = new_memo(16)
    q = query()
    with pytest.raises(error):
        memo.put(q, answer(q), new_stamp(), tally)
    assert len(memo) == 0 and memo.get(q) is None


def test_a_put_counts_nothing_and_each_get_adds_one_answer() -> None:
    memo = new_memo(16)
    q = query(qid=0x0101)
    response = answer(q)
    # What the plugin counted before; a fifth double, past the four the memo counts into, stays.
    tally = array("d", [3.0, 0.25, 100.0, 200.0, 42.0])
    assert memo.put(q, response, new_stamp(), tally)
    assert tally.tolist() == [3.0, 0.25, 100.0, 200.0, 42.0]
    for n in (1, 2, 3):
        assert memo.get(with_id(q, n)) == sent_for(with_id(q, n), response)
        # get() is no datagram read: no time taken.
        assert tally.tolist() == [3.0 + n, 0.25, 100.0 + n * len(q), 200.0 + n * len(response), 42.0]


def test_answers_put_with_one_tally_count_into_it_and_no_other() -> None:
    """The plugin has one entry for every answer of the same labels: the memo's answers to
    different questions may share it; an answer put without a tally counts nowhere."""
    memo = new_memo(16)
    shared, other = array("d", [0.0] * 4), array("d", [0.0] * 4)
    a, b, c = query("a.example."), query("bb.example.", "AAAA"), query("ccc.example.")
    assert memo.put(a, answer(a), new_stamp(), shared)
    assert memo.put(b, answer(b, "10.0.0.2"), new_stamp(), shared)
    assert memo.put(c, answer(c), new_stamp(), None)
    for wire in (a, b, b, c):
        assert memo.get(wire) is not None
    assert shared.tolist() == [3.0, 0.0, len(a) + 2 * len(b), len(answer(a)) + 2 * len(answer(b, "10.0.0.2"))]
    # Put again with another tally: the answers from then on count there.
    assert memo.put(a, answer(a), new_stamp(), other)
    assert memo.get(a) is not None
    assert shared[0] == 3.0 and other.tolist() == [1.0, 0.0, len(a), len(answer(a))]


def test_the_memo_holds_a_tally_while_an_answer_counts_into_it() -> None:
    memo = new_memo(16)
    tally = array("d", [0.0] * 4)
    base = sys.getrefcount(tally)
    wires = [query(f"n{i}.example.") for i in range(3)]
    revoked = new_stamp()
    for wire, stamp in zip(wires, (new_stamp(), revoked, new_stamp()), strict=True):
        assert memo.put(wire, answer(wire), stamp, tally)
    assert sys.getrefcount(tally) == base + 3
    assert memo.put(wires[0], answer(wires[0]), new_stamp())  # replaced by an answer without one
    assert sys.getrefcount(tally) == base + 2
    revoked.revoke()
    assert memo.get(wires[1]) is None  # (forgotten when found)
    assert sys.getrefcount(tally) == base + 1
    memo.clear()
    assert sys.getrefcount(tally) == base and tally.tolist() == [0.0] * 4


def test_a_tally_that_shrank_after_the_put_is_left_alone() -> None:
    """The array may change size while the memo holds it (it holds no view of it): an answer
    sent while it is too short counts nowhere, and the next ones count again."""
    memo = new_memo(16)
    q = query()
    tally = array("d", [0.0] * 4)
    assert memo.put(q, answer(q), new_stamp(), tally)
    del tally[1:]
    assert memo.get(q) == sent_for(q, answer(q)) and tally.tolist() == [0.0]
    tally.extend([0.0] * 3)
    assert memo.get(q) is not None and tally.tolist() == [1.0, 0.0, len(q), len(answer(q))]


def test_the_drain_adds_each_answer_it_sends_with_its_time() -> None:
    memo = new_memo(16)
    q = query(qid=0)
    response = answer(q, "10.0.0.9")
    tally = array("d", [0.0] * 4)
    assert memo.put(q, response, new_stamp(), tally)
    with loopback() as (sock, [client]):
        server = Server(sock, memo)
        asked = [with_id(q, 0x2000 + i) for i in range(3)]
        for wire in asked:
            client.send(wire)
        server.serve(len(asked))
        assert sorted(client.recv(4096) for _ in asked) == sorted(sent_for(wire, response) for wire in asked)
        assert server.calls == [] and nothing_more(client)
    count, seconds, query_bytes, response_bytes = tally
    assert (count, query_bytes, response_bytes) == (3.0, 3.0 * len(q), 3.0 * len(response))
    assert 0.0 <= seconds < math.inf  # (from the batch's read to its answer's: how long is no test's business)
