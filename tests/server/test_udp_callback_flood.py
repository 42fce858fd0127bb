"""A flood of forwarded names on the callback path (issue 19, section 6, after issue 18): one
wake-up of the UDP reader sends at most ``later_per_read`` queries upstream from the socket
callback; the rest of what it reads waits in the backlog as slow queries do (bounded, the oldest
dropped and counted, repeats shed without asking the chain once it is half full), and what waits
is started on the callback path still, answered as it would have been.

Each test runs a server in this event loop against a fake upstream (held silent until the test
opens its gate), and checks what the upstream was asked, what the chain was asked, the listener's
backlog and drop counts, and what the client got: counts, never timings.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import dns.message
import dns.rcode
import pytest

from interkube.dns.wire import RCODE_NOERROR, error_response, name_to_text
from interkube.plugin.handler import SLOW, Handler
from interkube.plugin.metrics import UDP_BACKLOG_DROPS
from interkube.plugin.request import Request
from interkube.plugins.forward.handler import ForwardHandler
from interkube.server import listeners
from interkube.server.dispatch import Dispatcher
from interkube.server.listeners import UdpEndpoint
from testkit.fakeupstream import FakeUpstream
from testkit.servers import free_port, in_process
from testkit.waiting import until
from tests.server.udp_helpers import client, endpoint

NAMES = [f"n{i}.example.org." for i in range(10)]


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    up = await FakeUpstream().start()
    for i, name in enumerate(NAMES):
        up.behaviour.records[(name, "A")] = [f"10.0.0.{i + 1}"]
    up.behaviour.gate = asyncio.Event()  # asked, but silent until the test opens it
    try:
        yield up
    finally:
        up.behaviour.gate.set()
        await up.stop()


class Served:
    """A server in this loop forwarding to ``upstream``: its UDP endpoint, its forward, and the
    queries its dispatcher was asked on the fast path and on the slow path."""

    def __init__(self, server: Any) -> None:
        [ep] = [lst._udp for lst in server.instance.listeners.values() if lst._udp is not None]
        [fwd] = [h for h in server.instance.built.handlers if isinstance(h, ForwardHandler)]
        self.ep: UdpEndpoint = ep
        self.fwd: ForwardHandler = fwd
        self.fast_asked = 0
        self.slow_asked = 0
        dispatcher: Dispatcher = ep.listener.dispatcher
        fast, serve = dispatcher.fast, dispatcher.serve

        def counted_fast(req: Request) -> bytes | None:
            self.fast_asked += 1
            return fast(req)

        def counted_serve(req: Request) -> Coroutine[Any, Any, bytes | None]:
            self.slow_asked += 1
            return serve(req)

        dispatcher.fast = counted_fast  # type: ignore[method-assign]
        dispatcher.serve = counted_serve  # type: ignore[method-assign]

    @property
    def ep_dropped(self) -> int:
        """Queries dropped from the backlog, counted in the metric or about to be."""
        return self.ep.dropped + self.ep.listener.stats.dropped_udp


@contextlib.asynccontextmanager
async def served(up: FakeUpstream) -> AsyncIterator[Served]:
    port = free_port()
    async with in_process(f".:{port} {{\n  bind 127.0.0.1\n  forward . {up.address}\n}}\n") as server:
        yield Served(server)


def flood(c: socket.socket, ep: UdpEndpoint, count: int, names: list[str] = NAMES) -> list[bytes]:
    """Send ``count`` queries for ``names`` in turn, each with its own ID, all before the listener
    gets a turn (no await): one wake-up of its reader reads them all. Returns them."""
    sent = []
    for i in range(count):
        q = dns.message.make_query(names[i % len(names)], "A", id=i + 1).to_wire()
        c.sendto(q, ep.sock.getsockname())
        sent.append(q)
    return sent


def answers(c: socket.socket, into: dict[int, dns.message.Message]) -> Callable[[], int]:
    def read() -> int:
        while True:
            try:
                msg = dns.message.from_wire(c.recv(4096))
            except BlockingIOError:
                return len(into)
            into[msg.id] = msg
    return read


async def test_a_wake_up_sends_a_bounded_number_upstream_and_the_rest_waits_shed_and_counted(
        reader: str, upstream: FakeUpstream) -> None:
    """100 forwarded queries read in one wake-up: 8 (the budget) go upstream from the socket
    callback; the others are asked of the chain until half the backlog (20 of 40) is held, then
    shed without the chain (all ten names seen by then); the oldest past 40 are dropped and
    counted. Before: all 100 went upstream, each through the chain."""
    async with served(upstream) as s:
        ep = s.ep
        ep.later_per_read = 8
        ep.later_in_flight = 0  # the per-wake-up budget alone (see the tests of later_in_flight)
        ep.backlog_limit = 40
        ep.inflight_limit = 0  # nothing waiting starts until the test says so
        ep._slow_keys_until = math.inf  # (no pump forgets the keys during the test)
        drops_before = UDP_BACKLOG_DROPS.counts.get(ep.listener.dispatcher.server, 0)
        with client() as c:
            flood(c, ep, 100)
            await until(lambda: s.fwd.inflight + len(ep.backlog) + s.ep_dropped == 100, "every query is read")
            await until(lambda: upstream.count("udp") == 8, "the budget's queries reach the upstream")
            assert s.fwd.inflight == 8
            assert s.fast_asked == 8 + 20
            assert len(ep.backlog) == 40
            await until(lambda: ep.listener.stats.dropped_udp == 100 - 8 - 40, "the drops are counted")
            assert UDP_BACKLOG_DROPS.counts[ep.listener.dispatcher.server] - drops_before == 52
            assert s.slow_asked == 0 and not ep.inflight
            assert upstream.count("udp") == 8


async def test_while_queries_wait_new_ones_queue_behind_them(reader: str, upstream: FakeUpstream) -> None:
    """A wake-up that finds queries waiting for the pump sends none on the callback path: new
    names (never seen, so asked of the chain) wait behind the older ones. Before: each wake-up
    sent its budget upstream ahead of what waited."""
    async with served(upstream) as s:
        ep = s.ep
        ep.later_per_read = 8
        ep.later_in_flight = 0  # the per-wake-up budget alone (see the tests of later_in_flight)
        ep.inflight_limit = 0
        with client() as c:
            flood(c, ep, 20)
            await until(lambda: s.fwd.inflight + len(ep.backlog) == 20, "the first flood is read")
            assert s.fwd.inflight == 8
            flood(c, ep, 10, [f"m{i}.example.org." for i in range(10)])
            await until(lambda: len(ep.backlog) == 12 + 10 or s.fwd.inflight > 8, "the second flood is read")
            assert s.fwd.inflight == 8 and len(ep.backlog) == 22
            assert s.fast_asked == 30  # each asked of the chain once: the backlog is below half full
            await until(lambda: upstream.count("udp") == 8, "the first budget reaches the upstream")
            assert s.slow_asked == 0 and s.ep_dropped == 0


async def test_queries_held_back_start_on_the_callback_path_and_are_answered_as_before(
        reader: str, upstream: FakeUpstream) -> None:
    """What a wake-up held back is started by the pump with the fast path first: forwarded from
    the callback (no slow-path task), each answered with its own ID and records, each asked of
    the upstream once, forward's counters as for any forwarded query."""
    async with served(upstream) as s:
        ep = s.ep
        ep.later_per_read = 8
        ep.later_in_flight = 0  # the per-wake-up budget alone (see the tests of later_in_flight)
        ep.inflight_limit = 0
        with client() as c:
            sent = flood(c, ep, 30)
            await until(lambda: s.fwd.inflight + len(ep.backlog) == 30, "every query is read")
            assert s.fwd.inflight == 8 and ep.holding
            ep.inflight_limit = listeners.MAX_UDP_INFLIGHT
            assert upstream.behaviour.gate is not None
            upstream.behaviour.gate.set()
            # One more, past this wake-up's budget: it waits too, and asks for a pump.
            assert ep.handle(dns.message.make_query(NAMES[0], "A", id=1000).to_wire(), c.getsockname()) is None
            got: dict[int, dns.message.Message] = {}
            await until(lambda: answers(c, got)() == 31, "every query is answered")
            for q in [*sent, dns.message.make_query(NAMES[0], "A", id=1000).to_wire()]:
                asked = dns.message.from_wire(q)
                resp = got[asked.id]
                assert resp.rcode() == dns.rcode.NOERROR
                assert resp.question == asked.question
                i = NAMES.index(asked.question[0].name.to_text())
                assert [rr.address for rr in resp.answer[0]] == [f"10.0.0.{i + 1}"]
            assert upstream.count("udp") == 31
            assert s.slow_asked == 0  # all on the callback path: no task, no serve()
            assert not ep.backlog and not ep.holding
            [up] = s.fwd.upstreams
            assert up.stats.requests == 31 and up.stats.responses[0][0] == 31.0
            assert s.fwd.inflight == 0


async def test_below_the_budget_nothing_waits(reader: str, upstream: FakeUpstream) -> None:
    """As many forwarded queries in a wake-up as the budget: all go upstream at once, none waits,
    the fast path is asked once each."""
    async with served(upstream) as s:
        ep = s.ep
        with client() as c:
            flood(c, ep, listeners.UDP_LATER_PER_READ)
            await until(lambda: upstream.count("udp") == listeners.UDP_LATER_PER_READ, "all reach the upstream")
            assert s.fwd.inflight == listeners.UDP_LATER_PER_READ
            assert s.fast_asked == listeners.UDP_LATER_PER_READ
            assert not ep.backlog and not ep.holding and s.ep_dropped == 0


def in_flight_bound(s: Served) -> UdpEndpoint:
    """``s``'s endpoint with a per-read budget of 8 and an in-flight bound of 20, nothing waiting
    started, and no attempt timing out while the upstream is held silent."""
    ep = s.ep
    ep.later_per_read = 8
    ep.later_in_flight = 20
    ep.inflight_limit = 0
    s.fwd.attempt_seconds = 30.0
    return ep


async def test_a_wake_up_with_nothing_out_sends_up_to_the_in_flight_bound(
        reader: str, upstream: FakeUpstream) -> None:
    """With no query out on the callback path, one wake-up sends past its per-read budget (8)
    up to ``later_in_flight`` (20): those are what clients with that many outstanding send, and
    holding them back made each dearer. The rest waits, as past the budget. Before: 8 went."""
    async with served(upstream) as s:
        ep = in_flight_bound(s)
        with client() as c:
            flood(c, ep, 30)
            await until(lambda: s.fwd.inflight + len(ep.backlog) == 30, "every query is read")
            assert s.fwd.inflight == 20 and ep.later_out == 20
            assert len(ep.backlog) == 10 and ep.holding
            await until(lambda: upstream.count("udp") == 20, "the wake-up's queries reach the upstream")
            assert s.fast_asked == 30 and s.slow_asked == 0


async def test_with_queries_out_a_wake_up_gets_its_per_read_budget_and_the_count_comes_back(
        reader: str, upstream: FakeUpstream) -> None:
    """15 queries out of 20: the next wake-up sends its per-read budget (8), not only the 5 the
    bound has room for, and the rest waits. Every answer relayed (the reader's and the pump's)
    takes its query off the count."""
    async with served(upstream) as s:
        ep = in_flight_bound(s)
        with client() as c:
            sent = flood(c, ep, 15)
            await until(lambda: s.fwd.inflight == 15, "the first queries go upstream")
            assert not ep.backlog and ep.later_out == 15
            more = [dns.message.make_query(f"m{i}.example.org.", "A", id=100 + i).to_wire() for i in range(10)]
            for q in more:
                c.sendto(q, ep.sock.getsockname())
            await until(lambda: s.fwd.inflight + len(ep.backlog) == 25, "the second queries are read")
            assert s.fwd.inflight == 15 + 8 and len(ep.backlog) == 2 and ep.later_out == 23
            ep.inflight_limit = listeners.MAX_UDP_INFLIGHT
            assert upstream.behaviour.gate is not None
            upstream.behaviour.gate.set()
            ep.handle(dns.message.make_query(NAMES[0], "A", id=1000).to_wire(), c.getsockname())  # (a pump)
            got: dict[int, dns.message.Message] = {}
            await until(lambda: answers(c, got)() == 26, "every query is answered")
            assert {dns.message.from_wire(q).id for q in [*sent, *more]} | {1000} == set(got)
            assert s.slow_asked == 0 and ep.later_out == 0 and s.fwd.inflight == 0


async def test_a_query_handed_back_to_the_slow_path_leaves_the_count(
        reader: str, upstream: FakeUpstream) -> None:
    """A query whose first attempt timed out goes to the slow path (slow()): it is no longer out
    on the callback path, and the next wake-up's room counts it so."""
    async with served(upstream) as s:
        ep = s.ep
        s.fwd.attempt_seconds = 0.2
        with client() as c:
            flood(c, ep, 5)
            await until(lambda: ep.later_out == 5, "the queries go upstream")
            await until(lambda: s.slow_asked == 5, "their attempts time out and go to the slow path")
            assert ep.later_out == 0
            assert upstream.behaviour.gate is not None
            upstream.behaviour.gate.set()
            got: dict[int, dns.message.Message] = {}
            await until(lambda: answers(c, got)() == 5, "the slow path answers them")


class SlowOnly(Handler):
    """Every name on the slow path (no callback path): counts what it is asked."""

    plugin = "slowonly"

    def __init__(self) -> None:
        self.fast_asked: list[str] = []
        self.served: list[str] = []

    def fast(self, req: Request) -> bytes | None:
        self.fast_asked.append(name_to_text(req.query.lname))
        return SLOW

    async def serve(self, req: Request) -> bytes:
        self.served.append(name_to_text(req.query.lname))
        return error_response(req.wire, RCODE_NOERROR, req.query)


async def test_a_chain_without_the_callback_path_is_asked_once_per_query(reader: str) -> None:
    """Where nothing ever goes on the callback path, a wake-up that finds queries waiting holds
    nothing back: the pump starts each query on the slow path without a second walk of the
    fast path."""
    head = SlowOnly()
    async with endpoint(head) as ep:
        ep.inflight_limit = 0
        with client() as c:
            flood(c, ep, 5)
            await until(lambda: len(ep.backlog) == 5, "the first queries wait")
            flood(c, ep, 5)  # read while those wait
            await until(lambda: len(ep.backlog) == 10, "the next ones wait too")
            assert not ep.holding
            ep.inflight_limit = listeners.MAX_UDP_INFLIGHT
            ep.handle(dns.message.make_query(NAMES[0], "A", id=1000).to_wire(), c.getsockname())  # (a pump)
            await until(lambda: len(head.served) == 11, "every query is served")
            assert sorted(head.fast_asked) == sorted(head.served)
