"""How a UDP socket to an upstream matches answers to the queries in its ID table: by ID and by
question (letter case aside), an answer to another question leaving the query waiting; the IDs
of one event-loop pass's queries distinct; an answer for an exchange cancelled meanwhile dropped
without a word. The upstream here is a bare socket, so the test says what comes back and when.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Iterator
from typing import Any

import dns.message
import pytest

from interkube.upstream import transport
from interkube.upstream.transport import DatagramExchanger, question_key
from testkit.servers import LOOPBACK


class Sink:
    """An AnswerSink that hands what it gets to a future."""

    def __init__(self) -> None:
        self.got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def done(self) -> bool:
        return self.got.done()

    def set_result(self, result: bytes) -> None:
        self.got.set_result(result)

    def set_exception(self, exception: BaseException) -> None:
        self.got.set_exception(exception)


@pytest.fixture
def upstream() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    sock.setblocking(False)
    yield sock
    sock.close()


@pytest.fixture
async def failures(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """What a socket callback raised (the C helper reports it as unraisable, the Python loop
    to the event loop's exception handler)."""
    seen: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: seen.append(context))
    return seen


async def _receive(sock: socket.socket) -> tuple[bytes, Any]:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recvfrom(sock, 4096), 10)


def _answer_to(query: bytes, *, name: str | None = None) -> bytes:
    """The upstream's answer to ``query`` (its ID), for ``name`` if given, else its question."""
    msg = dns.message.from_wire(query)
    if name is not None:
        msg = dns.message.make_query(name, "A")
        msg.id = int.from_bytes(query[:2], "big")
    return dns.message.make_response(msg).to_wire()


async def test_answers_match_their_question_whatever_the_letter_case(upstream: socket.socket) -> None:
    ex = DatagramExchanger(LOOPBACK, upstream.getsockname()[1], sockets=1)
    try:
        # As sent (forward's callback path) and lower-cased (the slow path, merge): both match
        # an answer that spells the name as sent, or otherwise.
        for sent, question_lower, echoed in (("MiXeD.example.", False, "mixed.example."),
                                             ("MiXeD.example.", True, "MIXED.EXAMPLE."),
                                             ("lower.example.", False, "lower.example.")):
            wire = dns.message.make_query(sent, "A").to_wire()
            question = question_key(wire) if question_lower else wire[12:12 + len(question_key(wire))]
            sink = Sink()
            ex.send_to(wire, asyncio.get_running_loop().time() + 10, question, sink)
            query, addr = await _receive(upstream)
            upstream.sendto(_answer_to(query, name=echoed), addr)
            answer = dns.message.from_wire(await asyncio.wait_for(sink.got, 10))
            assert answer.question[0].name.to_text() == echoed
    finally:
        ex.close()


async def test_an_answer_to_another_question_leaves_the_query_waiting_for_its_own(upstream: socket.socket) -> None:
    ex = DatagramExchanger(LOOPBACK, upstream.getsockname()[1], sockets=1)
    try:
        wire = dns.message.make_query("asked.example.", "A").to_wire()
        sink = Sink()
        ex.send_to(wire, asyncio.get_running_loop().time() + 10, question_key(wire), sink)
        query, addr = await _receive(upstream)
        upstream.sendto(_answer_to(query, name="spoofed.example."), addr)  # the right ID, not the question
        upstream.sendto(_answer_to(query), addr)
        answer = dns.message.from_wire(await asyncio.wait_for(sink.got, 10))
        assert answer.question[0].name.to_text() == "asked.example."
    finally:
        ex.close()


async def test_queries_of_one_pass_get_distinct_ids(upstream: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every ID drawn is the same: the second query of the pass must skip it (it is in use).
    ids = transport._Ids()
    ids.buf = (7).to_bytes(2, "big") * 64
    monkeypatch.setattr(transport, "_ids", ids)
    ex = DatagramExchanger(LOOPBACK, upstream.getsockname()[1], sockets=1)
    try:
        deadline = asyncio.get_running_loop().time() + 10
        sinks = {}
        for name in ("one.example.", "two.example."):  # no await between: one pass, one socket
            wire = dns.message.make_query(name, "A").to_wire()
            sinks[name] = Sink()
            ex.send_to(wire, deadline, question_key(wire), sinks[name])
        queries = [await _receive(upstream) for _ in range(2)]
        assert queries[0][0][:2] != queries[1][0][:2]
        for query, addr in queries:
            upstream.sendto(_answer_to(query), addr)
        for name, sink in sinks.items():
            answer = dns.message.from_wire(await asyncio.wait_for(sink.got, 10))
            assert answer.question[0].name.to_text() == name
    finally:
        ex.close()


async def test_an_answer_for_a_cancelled_exchange_is_dropped_quietly(upstream: socket.socket,
                                                                   failures: list[object]) -> None:
    ex = DatagramExchanger(LOOPBACK, upstream.getsockname()[1], sockets=1)
    try:
        first = ex.launch(dns.message.make_query("cancelled.example.", "A").to_wire(), 10)
        query, addr = await _receive(upstream)
        first.answer.cancel()  # its exchange not released yet: the entry is still in the table
        upstream.sendto(_answer_to(query), addr)
        # The next query on the same socket is answered: the first's answer was read (and
        # dropped) before it, in order.
        second = ex.launch(dns.message.make_query("next.example.", "A").to_wire(), 10)
        query, addr = await _receive(upstream)
        upstream.sendto(_answer_to(query), addr)
        answer = dns.message.from_wire(await asyncio.wait_for(second.answer, 10))
        assert answer.question[0].name.to_text() == "next.example."
        first.release()
        second.release()
        assert failures == []
    finally:
        ex.close()
