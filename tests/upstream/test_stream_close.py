"""The stream exchanger against upstreams that close connections under pipelined queries
(RFC 7766 §6.2.4): the queries left unanswered go to a fresh connection within their deadline,
an upstream that keeps closing after the same number of queries has that number learned, and a
connection that never answers is not reconnected to in a loop.

The upstream is testkit's FakeUpstream with ``close_after`` (a connection is closed once it has
answered that many queries, the rest left unread, as dnsmasq does after 100); the forward plugin
against a real dnsmasq is in tests/plugins/forward/test_forward_tcp_close.py.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator
from typing import Any

import dns.message
import pytest

from interkube.errors import UpstreamError, UpstreamTimeout
from interkube.upstream.transport import ConnectionClosed, StreamExchanger, _StreamConn
from testkit.dot import SERVER_NAME, Pki, messages
from testkit.fakeupstream import FakeUpstream
from testkit.servers import LOOPBACK
from testkit.waiting import until

LIMIT = 10
QUERIES = 100


@pytest.fixture
async def closing() -> AsyncIterator[FakeUpstream]:
    """An upstream that closes every TCP connection after answering LIMIT queries."""
    up = await FakeUpstream().start()
    up.behaviour.records = {("a.example.", "A"): ["192.0.2.1"]}
    up.behaviour.close_after = LIMIT
    yield up
    await up.stop()


def _query() -> bytes:
    return dns.message.make_query("a.example.", "A").to_wire()


async def _burst(ex: StreamExchanger, n: int = QUERIES, timeout: float = 5.0) -> collections.Counter[str]:
    """``n`` queries at once on ``ex``: how many were answered, and the failures by type."""

    async def one() -> str:
        try:
            await ex.exchange(_query(), timeout)
        except UpstreamError as exc:
            return type(exc).__name__
        return "answered"

    return collections.Counter(await asyncio.gather(*(one() for _ in range(n))))


async def test_queries_left_unanswered_on_a_closed_connection_go_to_the_next(closing: FakeUpstream) -> None:
    ex = StreamExchanger(LOOPBACK, closing.port)
    try:
        assert await _burst(ex) == {"answered": QUERIES}
    finally:
        ex.close()
    # The upstream did close connections under queries (64 pipelined on the first), which were
    # sent again.
    assert ex.counters.closed_early >= 1 and ex.counters.retried >= 1
    assert closing.tcp_connections >= QUERIES // LIMIT


async def test_the_upstream_limit_is_learned_and_kept_to(closing: FakeUpstream,
                                                         interkube_caplog: pytest.LogCaptureFixture) -> None:
    ex = StreamExchanger(LOOPBACK, closing.port)
    try:
        assert await _burst(ex) == {"answered": QUERIES}
        assert ex.queries_per_connection == LIMIT
        closed_early, retried, connections = ex.counters.closed_early, ex.counters.retried, closing.tcp_connections

        # From now on no connection carries more than the upstream answers on one: none is
        # closed under a query, nothing is sent twice.
        assert await _burst(ex) == {"answered": QUERIES}
        assert (ex.counters.closed_early, ex.counters.retried) == (closed_early, retried)
        assert closing.tcp_connections - connections >= QUERIES // LIMIT
    finally:
        ex.close()
    assert [m for m in messages(interkube_caplog, "interkube.upstream") if "closes connections" in m] == [
        f"tcp://{LOOPBACK}:{closing.port} closes connections after {LIMIT} queries: each connection now "
        f"carries at most {LIMIT}"]


async def test_a_connection_that_never_answers_is_not_reconnected_to_in_a_loop(closing: FakeUpstream) -> None:
    closing.behaviour.close_after = 0  # accepts, then closes
    ex = StreamExchanger(LOOPBACK, closing.port)
    try:
        with pytest.raises(ConnectionClosed, match="closed by the upstream"):
            await ex.exchange(_query(), 5)
    finally:
        ex.close()
    assert closing.tcp_connections == 2  # the first, and one retry
    assert ex.queries_per_connection is None


class _ClosesUnderEveryQuery(_StreamConn):
    """A connection whose upstream answers some other query, then closes under ours."""

    def write(self, data: bytes) -> None:
        def answer_another_and_close() -> None:
            self.received += 1
            self._lost(None)
        asyncio.get_running_loop().call_soon(answer_another_and_close)

    def close(self) -> None:
        self.closed_by_us = True
        self._lost(None)


class _ClosingExchanger(StreamExchanger):
    connects = 0

    async def _connect(self) -> Any:
        self.connects += 1
        return _ClosesUnderEveryQuery(self.name, self)


async def test_retries_end_at_the_query_deadline() -> None:
    """Each connection made progress (it answered something), so each close is retried; the
    query's own deadline is what ends it, with a timeout rather than a loop."""
    ex = _ClosingExchanger(LOOPBACK, 53)
    with pytest.raises(UpstreamTimeout):
        # The outer bound only turns a retry loop without end into a failure here.
        await asyncio.wait_for(ex.exchange(_query(), 0.3), 30)
    ex.close()
    # Every close was retried (the last one too when the deadline came while it reconnected).
    assert ex.connects > 2 and ex.counters.retried >= ex.connects - 1


async def test_over_tls_too(pki: Pki) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pki.crt("server"), pki.key("server"))
    up = await FakeUpstream(ssl=server_ctx).start()
    up.behaviour.records = {("a.example.", "A"): ["192.0.2.1"]}
    up.behaviour.close_after = LIMIT
    ex = StreamExchanger(LOOPBACK, up.port, ssl_context=pki.client_context(None), server_hostname=SERVER_NAME)
    try:
        assert await _burst(ex) == {"answered": QUERIES}
        assert ex.counters.closed_early >= 1 and ex.counters.retried >= 1
    finally:
        ex.close()
        await up.stop()


async def test_an_idle_connection_is_closed_after_expire_without_another_query(closing: FakeUpstream) -> None:
    """Not only when the next query comes: an upstream that serves one connection at a time
    (dnsmasq -d) serves no one else while we hold an idle one open."""
    closing.behaviour.close_after = None
    ex = StreamExchanger(LOOPBACK, closing.port, expire=0.2)
    try:
        await ex.exchange(_query(), 5)
        conn = ex._conns[0]
        await until(lambda: conn.closed, "the idle connection closed")
        assert conn.closed_by_us and ex._conns == []
    finally:
        ex.close()
