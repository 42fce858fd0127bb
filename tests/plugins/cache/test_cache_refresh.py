"""serve_stale (both modes) and prefetch (single-flight) with a scripted next plugin and clock."""

from __future__ import annotations

import asyncio

import dns.rcode
import pytest

from interkube.errors import UpstreamError
from interkube.plugins.cache.entry import STALE_TTL, SUCCESS
from interkube.plugins.cache.handler import STALE_RECHECK, CacheHandler

from cachetest import (
    Clock,
    Scripted,
    a_record,
    make_cache,
    query,
    refreshes_done,
    request,
    respond,
    ttls,
    upstream_down,
)


def forwarder(ttl: int = 60, address: str = "192.0.2.1") -> Scripted:
    """A next plugin that answers only on the slow path, as forward does."""
    return Scripted(a_record(ttl, address=address), on_fast=False)


async def expired(text: str, age: float = 61) -> tuple[Scripted, CacheHandler, Clock]:
    """A cache from ``text`` in front of a forwarder, holding one 60-second answer ``age`` old."""
    nxt = forwarder()
    cache, clock = make_cache(text, nxt)
    await cache.serve(request(query()))
    clock.advance(age)
    return nxt, cache, clock


async def test_without_serve_stale_an_expired_entry_is_a_miss_and_failure_propagates() -> None:
    nxt, cache, _ = await expired("cache", 60)
    nxt.error = upstream_down()
    with pytest.raises(UpstreamError):
        await cache.serve(request(query()))
    assert len(cache) == 0 and cache.stats.served_stale == 0


async def test_immediate_serves_stale_at_once_and_refreshes_in_the_background() -> None:
    nxt, cache, clock = await expired("cache {\n serve_stale 1h\n}")
    nxt.error = upstream_down()
    nxt.gate = asyncio.Event()  # the refresh hangs until the test lets it go
    stale = await cache.serve(request(query(qid=9)))
    assert stale[:2] == b"\x00\x09" and ttls(stale) == [STALE_TTL]
    assert cache.stats.served_stale == 1 and len(cache.refreshing) == 1
    await asyncio.sleep(0)
    assert nxt.serve_calls == 2  # the refresh has asked the next plugin
    # The fast path serves stale too, and shares the refresh already in flight.
    fast = cache.fast(request(query(qid=10)))
    assert fast is not None and ttls(fast) == [STALE_TTL] and len(cache.refreshing) == 1
    nxt.gate.set()
    await refreshes_done(cache)
    assert len(cache) == 1 and cache.stats.served_stale == 2
    # The refresh failed: for STALE_RECHECK seconds stale answers do not start another one.
    cache.fast(request(query()))
    assert not cache.refreshing and nxt.serve_calls == 2
    clock.advance(STALE_RECHECK)
    cache.fast(request(query()))
    assert len(cache.refreshing) == 1
    await refreshes_done(cache)
    assert nxt.serve_calls == 3


async def test_immediate_refresh_that_succeeds_replaces_the_stale_entry() -> None:
    nxt, cache, _ = await expired("cache {\n serve_stale\n}", 100)
    nxt.answer = a_record(60, address="192.0.2.2")
    assert ttls(await cache.serve(request(query()))) == [STALE_TTL]
    await refreshes_done(cache)
    fresh = cache.fast(request(query()))
    assert fresh is not None and ttls(fresh) == [60] and b"\xc0\x00\x02\x02" in fresh


async def test_stale_entries_are_served_only_within_the_duration() -> None:
    nxt = forwarder()
    cache, clock = make_cache("cache {\n serve_stale 10m\n}", nxt)
    await cache.serve(request(query()))
    nxt.error = upstream_down()
    clock.advance(60 + 599)
    assert ttls(await cache.serve(request(query()))) == [STALE_TTL]
    await refreshes_done(cache)
    clock.advance(1)
    with pytest.raises(UpstreamError):
        await cache.serve(request(query()))


async def test_verify_asks_the_next_plugin_first() -> None:
    nxt, cache, _ = await expired("cache {\n serve_stale 1h verify\n}")
    # The fast path never answers stale in verify mode when the next plugin needs the network.
    assert cache.fast(request(query())) is None
    nxt.answer = a_record(60, address="192.0.2.2")
    fresh = await cache.serve(request(query(qid=4)))
    assert fresh[:2] == b"\x00\x04" and ttls(fresh) == [60] and b"\xc0\x00\x02\x02" in fresh
    assert cache.stats.served_stale == 0 and nxt.serve_calls == 2


async def test_verify_serves_stale_when_the_next_plugin_fails_or_says_servfail() -> None:
    nxt, cache, clock = await expired("cache {\n serve_stale 1h verify\n}")
    nxt.error = upstream_down()
    assert ttls(await cache.serve(request(query()))) == [STALE_TTL]
    assert nxt.serve_calls == 2 and cache.stats.served_stale == 1
    # The failure recheck timer: no new attempt for a while, stale at once.
    clock.advance(STALE_RECHECK - 1)
    assert ttls(await cache.serve(request(query()))) == [STALE_TTL]
    assert nxt.serve_calls == 2
    clock.advance(1)
    nxt.error = None
    nxt.answer = lambda wire: respond(wire, rcode=dns.rcode.SERVFAIL)
    assert ttls(await cache.serve(request(query()))) == [STALE_TTL]
    assert nxt.serve_calls == 3 and cache.stats.served_stale == 3
    # The SERVFAIL did not replace the entry that can still be served.
    e = cache.entries[request(query()).query.key]  # type: ignore[union-attr]
    assert not e.servfail and e.kind == SUCCESS


async def test_verify_on_the_fast_path_with_a_next_plugin_that_answers_from_memory() -> None:
    nxt = Scripted(a_record(60))
    cache, clock = make_cache("cache {\n serve_stale 1h verify\n}", nxt)
    cache.fast(request(query()))
    clock.advance(61)
    nxt.answer = lambda wire: respond(wire, rcode=dns.rcode.SERVFAIL)
    stale = cache.fast(request(query()))
    assert stale is not None and ttls(stale) == [STALE_TTL] and nxt.fast_calls == 2
    clock.advance(STALE_RECHECK)
    nxt.answer = a_record(60)
    fresh = cache.fast(request(query()))
    assert fresh is not None and ttls(fresh) == [60] and nxt.fast_calls == 3


async def test_verify_gives_stale_after_the_client_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("interkube.plugins.cache.handler.STALE_CLIENT_TIMEOUT", 0.05)
    nxt, cache, _ = await expired("cache {\n serve_stale 1h verify\n}")
    nxt.gate = asyncio.Event()  # an upstream that does not answer
    assert ttls(await cache.serve(request(query()))) == [STALE_TTL]
    assert len(cache.refreshing) == 1  # the refresh goes on in the background
    nxt.gate.set()
    await refreshes_done(cache)
    assert ttls(cache.fast(request(query())) or b"") == [60]


async def test_prefetch_refreshes_a_popular_entry_once_however_many_hits_ask() -> None:
    nxt = forwarder(ttl=100)
    cache, clock = make_cache("cache {\n prefetch 3 1m 20%\n}", nxt)
    await cache.serve(request(query()))
    nxt.gate = asyncio.Event()
    clock.advance(50)
    for _ in range(3):  # popular, but 50 seconds left is above 20% of 100
        assert cache.fast(request(query())) is not None
    assert nxt.serve_calls == 1 and not cache.refreshing
    clock.advance(31)  # 19 seconds left: every hit now wants a prefetch
    hits = [cache.fast(request(query(qid=i))) for i in range(5)]
    hits.append(await cache.serve(request(query(qid=99))))
    assert all(h is not None and ttls(h) == [19] for h in hits)
    assert len(cache.refreshing) == 1 and cache.stats.prefetches == 1
    await asyncio.sleep(0)
    assert nxt.serve_calls == 2  # one upstream query for six triggers
    nxt.gate.set()
    await refreshes_done(cache)
    assert ttls(cache.fast(request(query())) or b"") == [100]
    e = cache.entries[request(query()).query.key]  # type: ignore[union-attr]
    assert e.hits >= 3  # popularity carried over to the new entry


async def test_prefetch_needs_hits_without_long_gaps() -> None:
    nxt = forwarder(ttl=100)
    cache, clock = make_cache("cache {\n prefetch 2 10s\n}", nxt)
    await cache.serve(request(query()))
    clock.advance(80)
    cache.fast(request(query()))
    clock.advance(11)  # a gap longer than DURATION: the count starts over
    cache.fast(request(query()))
    assert not cache.refreshing and cache.stats.prefetches == 0
    clock.advance(1)  # 8 seconds left, under 10% of 100 rounded up (10)
    cache.fast(request(query()))
    assert len(cache.refreshing) == 1 and cache.stats.prefetches == 1
    await refreshes_done(cache)
    assert nxt.serve_calls == 2


async def test_a_failed_prefetch_keeps_the_entry() -> None:
    nxt = forwarder(ttl=100)
    cache, clock = make_cache("cache {\n prefetch 1\n}", nxt)
    await cache.serve(request(query()))
    clock.advance(95)
    nxt.answer = lambda wire: respond(wire, rcode=dns.rcode.SERVFAIL)
    cache.fast(request(query()))
    await refreshes_done(cache)
    hit = cache.fast(request(query()))
    assert hit is not None and hit[3] & 0x0F == dns.rcode.NOERROR and ttls(hit) == [5]


async def test_stop_cancels_refreshes_in_flight() -> None:
    nxt = forwarder(ttl=100)
    nxt.gate = asyncio.Event()
    cache, clock = make_cache("cache {\n prefetch 1\n}", nxt)
    nxt.gate.set()
    await cache.serve(request(query()))
    nxt.gate.clear()
    clock.advance(95)
    cache.fast(request(query()))
    task = next(iter(cache.refreshing.values()))
    await cache.stop()
    assert task.cancelled() and not cache.refreshing


async def test_an_expired_servfail_is_not_served_stale() -> None:
    nxt = forwarder()
    nxt.answer = lambda wire: respond(wire, rcode=dns.rcode.SERVFAIL)
    cache, clock = make_cache("cache {\n serve_stale 1h\n}", nxt)
    await cache.serve(request(query()))
    clock.advance(5)  # the servfail duration has passed: ask again rather than repeat it
    nxt.answer = a_record(60)
    assert ttls(await cache.serve(request(query()))) == [60]
    assert nxt.serve_calls == 2 and cache.stats.served_stale == 0
