"""The cache handler on a clock the tests move: hits, misses, expiry, TTLs, bounds and metrics."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode

from interkube.plugins.cache.entry import DENIAL, SUCCESS

from cachetest import (
    SOA,
    Scripted,
    a_record,
    make_cache,
    nx_or_a,
    query,
    raw_a_answer,
    raw_nxdomain,
    raw_query,
    request,
    respond,
    ttls,
)


def test_miss_stores_and_the_next_query_is_a_fast_hit() -> None:
    nxt = Scripted(a_record(300))
    cache, _ = make_cache("cache", nxt)
    first = cache.fast(request(query(qid=7)))
    assert first is not None and nxt.calls == 1
    second = cache.fast(request(query(qid=8)))
    assert second is not None and nxt.calls == 1  # answered from the cache
    assert second[:2] == b"\x00\x08" and ttls(second) == [300]
    assert (list(cache.stats.hits), cache.stats.misses) == ([1, 0], 1)


def test_ttl_counts_down_from_storage_and_the_entry_expires() -> None:
    nxt = Scripted(a_record(300))
    cache, clock = make_cache("cache", nxt)
    assert ttls(cache.fast(request(query())) or b"") == [300]
    seen = []
    for step in (0.4, 0.6, 1.0, 97.5, 200.0):
        clock.advance(step)
        seen.append(ttls(cache.fast(request(query())) or b"")[0])
    assert seen == [300, 299, 298, 201, 1]  # elapsed 0.4, 1.0, 2.0, 99.5, 299.5 seconds
    assert nxt.calls == 1
    clock.advance(0.5)  # 300 seconds after storage: expired, fetched again
    assert ttls(cache.fast(request(query())) or b"") == [300]
    assert nxt.calls == 2


def test_ttls_are_never_below_one_while_fresh() -> None:
    nxt = Scripted(a_record(7))
    cache, clock = make_cache("cache", nxt)
    cache.fast(request(query()))
    seen = []
    while nxt.calls == 1:
        clock.advance(0.25)
        seen.append(ttls(cache.fast(request(query())) or b"")[0])
    # The last value is the refetch after expiry (7 again); all before it count down to 1.
    assert seen[:-1] == sorted(seen[:-1], reverse=True) and min(seen[:-1]) == 1
    assert seen[-1] == 7


def test_the_rendered_answer_is_reused_within_a_second() -> None:
    nxt = Scripted(a_record(300))
    cache, clock = make_cache("cache", nxt)
    cache.fast(request(query()))
    e = cache.entries[request(query()).query.key]  # type: ignore[union-attr]
    tpl = e.tpl
    clock.advance(0.9)
    cache.fast(request(query()))
    assert e.tpl is tpl
    clock.advance(0.2)
    cache.fast(request(query()))
    assert e.tpl is not tpl


def test_every_ttl_is_rewritten_and_opt_flags_stay() -> None:
    def answer(wire: bytes) -> bytes:
        return respond(wire, [("www.example.org.", 300, "A", "192.0.2.1"), ("www.example.org.", 300, "A", "192.0.2.2")],
                       authority=[("example.org.", 3000, "NS", "ns.example.org.")],
                       additional=[("ns.example.org.", 60, "A", "192.0.2.53")])

    cache, clock = make_cache("cache", Scripted(answer))
    first = cache.fast(request(query(do=True)))
    assert first is not None and ttls(first) == [60, 60, 60]  # the miss carries the lifetime too
    clock.advance(10)
    hit = dns.message.from_wire(cache.fast(request(query(do=True))) or b"")
    assert [rrset.ttl for rrset in hit.answer + hit.authority + hit.additional] == [50, 50, 50]
    assert hit.edns == 0 and hit.ednsflags & dns.flags.DO


def test_lifetime_is_clamped_by_min_and_max_ttl() -> None:
    cases = [("cache", 1, 5), ("cache", 100_000, 3600), ("cache 30", 300, 30),
             ("cache {\n success 100 60 10\n}", 3, 10), ("cache {\n success 100 60 0\n}", 3, 3)]
    for text, upstream_ttl, lifetime in cases:
        cache, clock = make_cache(text, Scripted(a_record(upstream_ttl)))
        assert ttls(cache.fast(request(query())) or b"") == [lifetime], text
        clock.advance(lifetime - 0.01)
        assert cache.fast(request(query())) is not None and cache.stats.hits[0] == 1, text
        clock.advance(0.01)
        cache.fast(request(query()))
        assert cache.stats.misses == 2, text


def test_upstream_ttl_zero_with_min_ttl_zero_is_not_cached() -> None:
    nxt = Scripted(a_record(0))
    cache, _ = make_cache("cache {\n success 100 60 0\n}", nxt)
    cache.fast(request(query()))
    cache.fast(request(query()))
    assert nxt.calls == 2 and len(cache) == 0


def test_negative_caching_uses_the_soa_minimum() -> None:
    def nxdomain(wire: bytes) -> bytes:
        return respond(wire, authority=[("example.org.", 3600, "SOA", SOA.format(minimum=60))],
                       rcode=dns.rcode.NXDOMAIN)

    nxt = Scripted(nxdomain)
    cache, clock = make_cache("cache", nxt)
    first = dns.message.from_wire(cache.fast(request(query("nx.example.org."))) or b"")
    assert first.rcode() == dns.rcode.NXDOMAIN and first.authority[0].ttl == 60
    clock.advance(59.5)
    hit = dns.message.from_wire(cache.fast(request(query("nx.example.org."))) or b"")
    assert hit.rcode() == dns.rcode.NXDOMAIN and hit.authority[0].ttl == 1
    assert nxt.calls == 1 and list(cache.stats.hits) == [0, 1]
    clock.advance(0.5)
    cache.fast(request(query("nx.example.org.")))
    assert nxt.calls == 2


def test_nodata_is_a_denial_clamped_by_the_denial_ttl() -> None:
    def nodata(wire: bytes) -> bytes:
        return respond(wire, authority=[("example.org.", 86400, "SOA", SOA.format(minimum=86400))])

    cache, _ = make_cache("cache", Scripted(nodata))
    first = dns.message.from_wire(cache.fast(request(query(rdtype="AAAA"))) or b"")
    assert first.rcode() == dns.rcode.NOERROR and first.authority[0].ttl == 1800
    assert len(cache.order[DENIAL]) == 1 and len(cache.order[SUCCESS]) == 0


def test_nxdomain_without_soa_is_not_cached() -> None:
    nxt = Scripted(lambda wire: respond(wire, rcode=dns.rcode.NXDOMAIN))
    cache, _ = make_cache("cache", nxt)
    cache.fast(request(query()))
    cache.fast(request(query()))
    assert nxt.calls == 2 and len(cache) == 0


def test_servfail_is_cached_for_the_servfail_duration() -> None:
    nxt = Scripted(lambda wire: respond(wire, rcode=dns.rcode.SERVFAIL))
    cache, clock = make_cache("cache", nxt)
    cache.fast(request(query()))
    clock.advance(4.9)
    assert (cache.fast(request(query())) or b"")[3] & 0x0F == dns.rcode.SERVFAIL
    assert nxt.calls == 1
    clock.advance(0.1)
    cache.fast(request(query()))
    assert nxt.calls == 2

    nxt2 = Scripted(lambda wire: respond(wire, rcode=dns.rcode.SERVFAIL))
    cache2, clock2 = make_cache("cache {\n servfail 30s\n}", nxt2)
    cache2.fast(request(query()))
    clock2.advance(29)
    cache2.fast(request(query()))
    assert nxt2.calls == 1


def test_servfail_zero_disables_servfail_caching() -> None:
    nxt = Scripted(lambda wire: respond(wire, rcode=dns.rcode.SERVFAIL))
    cache, _ = make_cache("cache {\n servfail 0\n}", nxt)
    cache.fast(request(query()))
    cache.fast(request(query()))
    assert nxt.calls == 2


def test_truncated_refused_and_zone_transfers_are_not_cached() -> None:
    for answer in (lambda w: respond(w, [("www.example.org.", 300, "A", "192.0.2.1")], tc=True),
                   lambda w: respond(w, rcode=dns.rcode.REFUSED)):
        nxt = Scripted(answer)
        cache, _ = make_cache("cache", nxt)
        cache.fast(request(query()))
        cache.fast(request(query()))
        assert nxt.calls == 2 and len(cache) == 0
    nxt = Scripted(lambda w: respond(w, authority=[("example.org.", 300, "SOA", SOA.format(minimum=300))]))
    cache, _ = make_cache("cache", nxt)
    for _ in range(2):
        cache.fast(request(query("example.org.", "AXFR", edns=False)))
    assert nxt.calls == 2 and cache.stats.misses == 0


def test_aa_comes_from_upstream_on_the_miss_and_is_cleared_on_hits() -> None:
    cache, _ = make_cache("cache", Scripted(a_record(300)))
    miss = dns.message.from_wire(cache.fast(request(query())) or b"")
    hit = dns.message.from_wire(cache.fast(request(query())) or b"")
    assert miss.flags & dns.flags.AA and not hit.flags & dns.flags.AA
    assert hit.flags & dns.flags.QR and hit.flags & dns.flags.RD


def test_case_and_id_of_each_query_are_kept_on_hits() -> None:
    nxt = Scripted(a_record(300))
    cache, _ = make_cache("cache", nxt)
    cache.fast(request(query("www.example.org.", qid=1)))
    for qid, name in ((0x1234, "WwW.ExAmple.ORG."), (0xBEEF, "WWW.EXAMPLE.ORG."), (2, "www.example.org.")):
        wire = cache.fast(request(query(name, qid=qid)))
        assert wire is not None
        msg = dns.message.from_wire(wire)
        assert msg.id == qid
        labels = tuple(name.encode().split(b"."))
        assert msg.question[0].name.labels == labels
        assert msg.answer[0].name.labels == labels  # a compression pointer into the question
    assert nxt.calls == 1


def test_query_shapes_are_cached_apart() -> None:
    nxt = Scripted(a_record(300))
    cache, _ = make_cache("cache", nxt)
    for wire in (query(), query(edns=False), query(do=True)):
        cache.fast(request(wire))
        cache.fast(request(wire))
    assert nxt.calls == 3 and cache.stats.hits[SUCCESS] == 3
    no_edns = dns.message.from_wire(cache.fast(request(query(edns=False))) or b"")
    assert no_edns.edns == -1


def test_only_the_cache_zones_are_cached_and_counted() -> None:
    nxt = Scripted(a_record(300))
    cache, _ = make_cache("cache example.org", nxt)
    for _ in range(2):
        cache.fast(request(query("www.example.net.")))
    assert nxt.calls == 2 and cache.stats.misses == 0 and len(cache) == 0
    for _ in range(2):
        cache.fast(request(query("www.example.org.")))
    assert nxt.calls == 3 and cache.stats.misses == 1


def test_disable_success_for_some_zones_and_denial_everywhere() -> None:
    nxt = Scripted(nx_or_a)
    cache, _ = make_cache("cache {\n disable success private.example.org\n disable denial\n}", nxt)
    for name in ("www.private.example.org.", "www.example.org.", "nx.example.org."):
        cache.fast(request(query(name)))
        cache.fast(request(query(name)))
    assert nxt.calls == 5  # only www.example.org. was cached
    assert len(cache) == 1


def test_keepttl_answers_with_the_stored_ttl_until_expiry() -> None:
    nxt = Scripted(a_record(100))
    cache, clock = make_cache("cache {\n keepttl\n}", nxt)
    cache.fast(request(query()))
    clock.advance(99)
    assert ttls(cache.fast(request(query())) or b"") == [100]
    clock.advance(1)
    cache.fast(request(query()))
    assert nxt.calls == 2


def test_a_response_to_another_question_is_passed_on_but_dropped() -> None:
    nxt = Scripted(lambda wire: respond(query("other.example.org."), [("other.example.org.", 300, "A", "192.0.2.9")]))
    cache, _ = make_cache("cache", nxt)
    cache.fast(request(query()))
    assert cache.stats.drops == 1 and len(cache) == 0


def test_nothing_is_counted_when_the_next_plugin_needs_the_slow_path() -> None:
    nxt = Scripted(a_record(300), on_fast=False)
    cache, _ = make_cache("cache", nxt)
    assert cache.fast(request(query())) is None
    assert cache.stats.misses == 0 and len(cache) == 0


async def test_slow_path_miss_then_fast_hit() -> None:
    nxt = Scripted(a_record(300), on_fast=False)
    cache, clock = make_cache("cache", nxt)
    first = await cache.serve(request(query(qid=3)))
    assert ttls(first) == [300] and nxt.serve_calls == 1
    clock.advance(2)
    hit = cache.fast(request(query(qid=4)))
    assert hit is not None and hit[:2] == b"\x00\x04" and ttls(hit) == [298]
    # The slow path answers hits too (queries the fast parser sent there first).
    assert ttls(await cache.serve(request(query(qid=5), "tcp"))) == [298]
    assert nxt.serve_calls == 1 and cache.stats.hits[SUCCESS] == 2 and cache.stats.misses == 1


def test_bounded_size_under_100k_distinct_names() -> None:
    nxt = Scripted(raw_a_answer(300))
    cache, _ = make_cache("cache {\n success 1000\n}", nxt)
    names = [f"n{i}.example.org." for i in range(100_000)]
    for i, name in enumerate(names):
        assert cache.fast(request(raw_query(name))) is not None
        if i % 10_000 == 0:
            assert len(cache.order[SUCCESS]) <= 1000 and len(cache) <= 1000
    assert len(cache.order[SUCCESS]) == len(cache) == 1000
    assert cache.stats.evictions == [99_000, 0]
    # The oldest went first: the last thousand names are the ones kept.
    calls = nxt.calls
    cache.fast(request(raw_query(names[-1])))
    cache.fast(request(raw_query(names[-1000])))
    assert nxt.calls == calls
    cache.fast(request(raw_query(names[-1001])))
    assert nxt.calls == calls + 1


def test_default_capacity_holds_9984_of_each_kind_under_100k_names() -> None:
    success, denial = raw_a_answer(300), raw_nxdomain(300)
    cache, _ = make_cache("cache", Scripted(lambda w: denial(w) if w[13:15] == b"nx" else success(w)))
    for i in range(50_000):
        cache.fast(request(raw_query(f"ok{i}.example.org.")))
        cache.fast(request(raw_query(f"nx{i}.example.org.")))
        if i % 5000 == 0:
            assert all(len(o) <= 9984 for o in cache.order)
    assert [len(o) for o in cache.order] == [9984, 9984] and len(cache) == 2 * 9984
    assert cache.stats.evictions == [50_000 - 9984, 50_000 - 9984]
    assert cache.stats.misses == 100_000


def test_an_answer_that_changes_kind_moves_between_the_caches() -> None:
    state = {"exists": True}

    def answer(wire: bytes) -> bytes:
        if state["exists"]:
            return respond(wire, [("www.example.org.", 10, "A", "192.0.2.1")])
        return respond(wire, authority=[("example.org.", 300, "SOA", SOA.format(minimum=300))],
                       rcode=dns.rcode.NXDOMAIN)

    cache, clock = make_cache("cache", Scripted(answer))
    cache.fast(request(query()))
    state["exists"] = False
    clock.advance(10)
    cache.fast(request(query()))
    assert [len(o) for o in cache.order] == [0, 1] and len(cache) == 1


def test_metrics_families_labels_and_values() -> None:
    cache, _ = make_cache("cache example.org example.net {\n success 1\n}", Scripted(nx_or_a),
                          server="dns://127.0.0.1:5300")
    cache.stats.owner = cache
    for name in ("a.example.org.", "a.example.org.", "b.example.org.", "nx.example.org.", "nx.example.org."):
        cache.fast(request(query(name)))
    families = {f.name: f for f in cache.collect()}
    assert set(families) == {f"interkube_cache_{n}" for n in
                             ("entries", "hits", "misses", "requests", "prefetch", "evictions",
                              "served_stale", "drops")}
    assert families["interkube_cache_entries"].type == "gauge"
    assert all(f.type == "counter" for n, f in families.items() if n != "interkube_cache_entries")

    def values(family: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {tuple(sorted(s.labels.items())): s.value for s in families[family].samples
                if not s.name.endswith("_created")}

    base = {"server": "dns://127.0.0.1:5300", "zones": "example.org.,example.net.", "view": ""}

    def key(**extra: str) -> tuple[tuple[str, str], ...]:
        return tuple(sorted({**base, **extra}.items()))

    assert values("interkube_cache_entries") == {key(type="success"): 1, key(type="denial"): 1}
    assert values("interkube_cache_hits") == {key(type="success"): 1, key(type="denial"): 1}
    assert values("interkube_cache_evictions") == {key(type="success"): 1, key(type="denial"): 0}
    assert values("interkube_cache_misses") == {key(): 3}
    assert values("interkube_cache_requests") == {key(): 5}
    assert values("interkube_cache_prefetch") == {key(): 0}
    assert values("interkube_cache_served_stale") == {key(): 0}
    assert [s.name for s in families["interkube_cache_hits"].samples] == ["interkube_cache_hits_total"] * 2


async def test_metrics_source_is_registered_while_running_and_survives_a_rebuild() -> None:
    from interkube.corefile.parser import parse_text
    from interkube.plugin.services import Services
    from interkube.server.runtime import build

    services = Services()
    text = "example.org:5300 {\n cache\n}\n"
    old = next(h for h in build(parse_text(text), "Corefile", services).handlers if h.plugin == "cache")
    await old.start()
    assert old in services.metrics.sources
    old.stats.misses += 3  # type: ignore[attr-defined]
    # A reload builds a new handler for the same server and zones: the counters carry on and
    # only the running one publishes them.
    new = next(h for h in build(parse_text(text), "Corefile", services).handlers if h.plugin == "cache")
    await new.start()
    await old.stop()
    assert old not in services.metrics.sources and new in services.metrics.sources
    assert old.collect() == []  # type: ignore[attr-defined]
    misses = next(f for f in new.collect() if f.name == "interkube_cache_misses")  # type: ignore[attr-defined]
    assert misses.samples[0].value == 3
    await new.stop()
