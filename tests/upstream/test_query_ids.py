"""A query ID goes back to the pool the moment its answer is matched, before the query that
sent it has finished; a new query may get it at once. Finishing the old query must then leave
the new one's entry alone, or the new query's answer is dropped as unexpected and it times out.

Seen as one "no answer in 2s" in a few thousand pipelined queries to dnsmasq (over UDP the
query would never end: its deadline is kept in the entry that was removed); made certain here
by handing out the same ID twice in a row.
"""

from __future__ import annotations

import asyncio
from typing import Any

import dns.message
import pytest

from interkube.pkg.framing import frame
from interkube.upstream import transport
from interkube.upstream.transport import DatagramExchanger, StreamExchanger, _StreamConn
from testkit.fakeupstream import FakeUpstream
from testkit.servers import LOOPBACK
from testkit.waiting import until

SAME_ID = 7


@pytest.fixture
def one_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """Query IDs drawn as SAME_ID, again and again (a fresh ID still skips those in use)."""
    ids = transport._Ids()
    ids.buf = SAME_ID.to_bytes(2, "big") * 64
    monkeypatch.setattr(transport, "_ids", ids)


def _query(name: str) -> bytes:
    return dns.message.make_query(name, "A").to_wire()


class _ScriptedConn(_StreamConn):
    """A connection whose upstream answers when the test says."""

    def __init__(self, name: str, owner: StreamExchanger) -> None:
        super().__init__(name, owner)
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data[2:])  # the query, without its length prefix

    def close(self) -> None:
        self.closed_by_us = True
        self._lost(None)

    def answer(self, i: int) -> None:
        """The answer to the i-th query written arrives."""
        self._feed(frame(dns.message.make_response(dns.message.from_wire(self.written[i])).to_wire()))


class _ScriptedExchanger(StreamExchanger):
    conn: _ScriptedConn | None = None

    async def _connect(self) -> Any:
        self.conn = _ScriptedConn(self.name, self)
        return self.conn


@pytest.mark.usefixtures("one_id")
async def test_stream_a_finished_query_leaves_the_next_query_with_its_id_alone() -> None:
    ex = _ScriptedExchanger(LOOPBACK, 53)
    first = asyncio.create_task(ex.exchange(_query("a.example."), 5))
    await until(lambda: ex.conn is not None and ex.conn.written, "the first query written")
    conn = ex.conn
    assert conn is not None
    # The second query starts before the first resumes from its answer: it gets the same ID.
    second = asyncio.create_task(ex.exchange(_query("b.example."), 5))
    conn.answer(0)
    await first
    assert len(conn.written) == 2 and conn.written[1][:2] == SAME_ID.to_bytes(2, "big")
    conn.answer(1)
    answer = dns.message.from_wire(await second)
    assert answer.question[0].name.to_text() == "b.example."
    ex.close()


@pytest.mark.usefixtures("one_id")
async def test_udp_a_released_query_leaves_the_next_query_with_its_id_alone() -> None:
    up = await FakeUpstream().start()
    up.behaviour.records = {("a.example.", "A"): ["192.0.2.1"], ("b.example.", "A"): ["192.0.2.2"]}
    ex = DatagramExchanger(LOOPBACK, up.port, sockets=1)
    try:
        first = ex.launch(_query("a.example."), 5)
        await first.answer
        second = ex.launch(_query("b.example."), 5)  # the first's ID is free again: the same
        first.release()
        # Bounded here: a query whose entry was taken away is never answered nor timed out.
        answer = dns.message.from_wire(await asyncio.wait_for(second.answer, 10))
        second.release()
        assert answer.question[0].name.to_text() == "b.example."
    finally:
        ex.close()
        await up.stop()
