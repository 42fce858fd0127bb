"""The cache in a running server: real sockets, forward to a scripted upstream or to dnsmasq."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import pytest

from interkube.plugins.cache.entry import STALE_TTL
from interkube.plugins.cache.handler import CacheHandler
from testkit.dig import dig, needs_dig
from testkit.fakeupstream import FakeUpstream
from testkit.servers import LOOPBACK, aquery, dnsmasq, free_port, in_process, interkube_process, stop_process

from cachetest import Clock


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    up = await FakeUpstream().start()
    up.behaviour.records = {("www.example.org.", "A"): ["192.0.2.1"]}
    up.behaviour.ttl = 60
    yield up
    await up.stop()


class Running:
    """An in-process server with a cache whose clock the test holds."""

    def __init__(self, server: Any, port: int) -> None:
        self.server = server
        self.port = port
        self.cache: CacheHandler = next(h for h in server.instance.built.handlers if h.plugin == "cache")
        self.clock = Clock(time.monotonic())
        self.cache.clock = self.clock

    async def query(self, name: str = "www.example.org.", rdtype: str = "A", **kwargs: Any) -> dns.message.Message:
        return await aquery(name, rdtype, self.port, **kwargs)

    async def refreshed(self) -> None:
        await asyncio.gather(*self.cache.refreshing.values(), return_exceptions=True)


@pytest.fixture
async def running(upstream: FakeUpstream) -> AsyncIterator[Any]:
    """``await running(options)``: `cache { options }` in front of forward to the fake upstream."""
    async with contextlib.AsyncExitStack() as stack:
        async def start(options: str = "") -> Running:
            port = free_port()
            corefile = (f".:{port} {{\n bind 127.0.0.1\n cache {{\n{options}\n }}\n"
                        f" forward . {upstream.address} {{\n  max_fails 0\n }}\n}}\n")
            server = await stack.enter_async_context(in_process(corefile))
            return Running(server, port)

        yield start


def addresses(msg: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in msg.answer for rd in rrset)


async def test_hits_keep_each_clients_id_and_letter_case(running: Any, upstream: FakeUpstream) -> None:
    srv = await running()
    first = await srv.query("www.example.org.", use_edns=0)
    assert addresses(first) == ["192.0.2.1"] and first.answer[0].ttl == 60
    for qid, name in ((0x0102, "WwW.ExAmple.ORG."), (0xFFFE, "www.EXAMPLE.org.")):
        q = dns.message.make_query(name, "A", use_edns=0)
        q.id = qid
        msg = await dns.asyncquery.udp(q, LOOPBACK, port=srv.port, timeout=3)
        assert msg.id == qid and msg.rcode() == dns.rcode.NOERROR
        assert msg.question[0].name.labels == tuple(name.encode().split(b"."))
        assert msg.answer[0].name.labels == msg.question[0].name.labels
        assert addresses(msg) == ["192.0.2.1"] and not msg.flags & dns.flags.AA
    tcp = await srv.query("WWW.example.ORG.", tcp=True, use_edns=0)
    assert addresses(tcp) == ["192.0.2.1"]
    assert upstream.count() == 1  # one question asked upstream, four answered
    assert srv.cache.stats.hits[0] == 3


async def test_ttl_counts_down_then_the_entry_is_fetched_again(running: Any, upstream: FakeUpstream) -> None:
    srv = await running()
    await srv.query()
    srv.clock.advance(45.5)
    assert (await srv.query()).answer[0].ttl == 15
    srv.clock.advance(14.5)
    assert (await srv.query()).answer[0].ttl == 60
    assert upstream.count() == 2


async def test_servfail_from_upstream_is_cached_for_five_seconds(running: Any, upstream: FakeUpstream) -> None:
    srv = await running()
    upstream.behaviour.rcode = dns.rcode.SERVFAIL
    assert (await srv.query()).rcode() == dns.rcode.SERVFAIL
    assert (await srv.query()).rcode() == dns.rcode.SERVFAIL
    assert upstream.count() == 1
    upstream.behaviour.rcode = None
    srv.clock.advance(5)
    assert (await srv.query()).rcode() == dns.rcode.NOERROR
    assert upstream.count() == 2


async def test_serve_stale_immediate_when_the_upstream_is_stopped(running: Any, upstream: FakeUpstream) -> None:
    srv = await running("  serve_stale 1h immediate")
    assert (await srv.query()).answer[0].ttl == 60
    await upstream.stop()
    srv.clock.advance(61)
    stale = await srv.query()
    assert stale.rcode() == dns.rcode.NOERROR and addresses(stale) == ["192.0.2.1"]
    assert stale.answer[0].ttl == STALE_TTL
    await srv.refreshed()  # the background refresh failed: the entry is still there
    assert addresses(await srv.query()) == ["192.0.2.1"]
    assert srv.cache.stats.served_stale == 2
    served = {f.name: f for f in srv.cache.collect()}["interkube_cache_served_stale"]
    assert served.samples[0].value == 2


async def test_serve_stale_verify_when_the_upstream_is_stopped(running: Any, upstream: FakeUpstream) -> None:
    srv = await running("  serve_stale 1h verify")
    await srv.query()
    await upstream.stop()
    srv.clock.advance(61)
    stale = await srv.query(timeout=10)
    assert addresses(stale) == ["192.0.2.1"] and stale.answer[0].ttl == STALE_TTL
    assert srv.cache.stats.served_stale == 1


async def test_serve_stale_verify_when_the_upstream_is_silent(running: Any, upstream: FakeUpstream) -> None:
    srv = await running("  serve_stale 1h verify")
    await srv.query()
    upstream.behaviour.silent = True
    srv.clock.advance(61)
    stale = await srv.query(timeout=10)  # after the RFC 8767 client response timer
    assert addresses(stale) == ["192.0.2.1"] and stale.answer[0].ttl == STALE_TTL
    assert upstream.count() >= 2  # verify asked the upstream before giving the stale answer


async def test_serve_stale_verify_prefers_a_fresh_answer(running: Any, upstream: FakeUpstream) -> None:
    srv = await running("  serve_stale 1h verify")
    await srv.query()
    upstream.behaviour.records = {("www.example.org.", "A"): ["192.0.2.2"]}
    srv.clock.advance(61)
    fresh = await srv.query()
    assert addresses(fresh) == ["192.0.2.2"] and fresh.answer[0].ttl == 60
    assert srv.cache.stats.served_stale == 0


async def test_prefetch_is_single_flight_against_a_slow_upstream(running: Any, upstream: FakeUpstream) -> None:
    srv = await running("  prefetch 1 1m 50%")
    upstream.behaviour.ttl = 100
    await srv.query()
    assert upstream.count() == 1
    # The refresh stays in flight while the hits arrive: the upstream holds its answer until
    # every hit has been answered (a delay would only make that likely).
    upstream.behaviour.gate = asyncio.Event()
    srv.clock.advance(60)  # 40 seconds left of 100: under 50%
    try:
        answers = await asyncio.gather(*(srv.query() for _ in range(10)))
        assert all(a.answer[0].ttl == 40 for a in answers)
        assert len(srv.cache.refreshing) == 1  # still in flight: every hit came while it was
    finally:
        upstream.behaviour.gate.set()
    await srv.refreshed()
    assert upstream.count() == 2  # ten triggers, one upstream query
    assert srv.cache.stats.prefetches == 1
    assert (await srv.query()).answer[0].ttl == 100


# --- a real interkube process in front of dnsmasq ------------------------------------------------


@needs_dig
def test_process_answers_from_cache_after_dnsmasq_stops(tmp_path: Path) -> None:
    up_port, port = free_port(), free_port()
    core = tmp_path / "Corefile"
    core.write_text(f".:{port} {{\n bind 127.0.0.1\n errors\n cache\n forward . 127.0.0.1:{up_port}\n}}\n")
    with dnsmasq(up_port, {"www.example.org": ["192.0.2.10"]}, extra=("--local-ttl=300",)) as upstream, \
            interkube_process(core, port):
        first = dig(port, "www.example.org", "A", wait=5, check=False)
        assert "status: NOERROR" in first and re.search(r"\s300\s+IN\s+A\s+192\.0\.2\.10", first), first
        stop_process(upstream)
        # dnsmasq is gone: only the cache can answer now, with the client's case and fewer TTL seconds.
        again = dig(port, "WwW.ExAmple.ORG", "A", wait=5, check=False)
        assert "status: NOERROR" in again, again
        m = re.search(r"^WwW\.ExAmple\.ORG\.\s+(\d+)\s+IN\s+A\s+192\.0\.2\.10$", again, re.M)
        assert m is not None and 0 < int(m.group(1)) <= 300, again
        flags = re.search(r";; flags: ([a-z ]+);", again)
        assert flags is not None and "aa" not in flags.group(1).split() and "qr" in flags.group(1).split()
        # The same question shape (EDNS, RD) through dnspython over TCP: also from the cache.
        import dns.query

        msg = dns.query.tcp(dns.message.make_query("www.example.org", "A", use_edns=0), LOOPBACK, port=port, timeout=5)
        assert addresses(msg) == ["192.0.2.10"]
        # A name the cache has never seen goes upstream, which is down: SERVFAIL.
        assert "status: SERVFAIL" in dig(port, "other.example.org", "A", wait=5, check=False)
