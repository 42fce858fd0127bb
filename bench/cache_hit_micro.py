"""Micro-benchmark of a cache hit on the fast path: `python bench/cache_hit_micro.py`.

What one UDP datagram costs the server between the socket callback and sendto() when the cache
answers it: parse_query, a Request, the dispatcher's zone match and fast path, the cache lookup
and its template render. No sockets, no event loop: the figure is the Python work per query,
the ceiling the listener's overhead then lowers.

Variants, all in one run and on one core (os.sched_setaffinity), so that they compare:

* template    - the same query answered by a MemoryHandler template (the hosts/file pattern):
                the floor a cache hit should be close to;
* cache       - the cache answering from a stored entry;
* cache+hop   - a handler in front of the cache that only passes the query on (the share of
                the next variant's cost that is the chain hop, not the counting);
* cache+int   - a handler in front of the cache that adds one to a plain int per answer;
* cache+count - a handler in front of the cache doing prometheus-style plain counting with
                labels (a dict increment keyed by zone, transport and type, a list increment per
                rcode: how plugins count on the hot path, see interkube.plugin.metrics);
* cache+client- the same counts through prometheus_client's Counter.labels().inc(), the cost
                the plain counters avoid (for reference).

Each variant runs in rounds of a fixed number of queries until its time budget is spent; the
rounds interleave the variants; the best round is the figure (the median is printed beside it
as a noise check). Bounded: about ROUNDS x BUDGET seconds per variant.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import dns.message
import dns.rrset

from interkube.dns.names import ZoneSet
from interkube.dns.wire import parse_query
from interkube.plugin.answers import MemoryHandler
from interkube.plugin.handler import Handler, link
from interkube.plugin.request import Request, Route
from interkube.plugins.cache.handler import CacheHandler
from interkube.plugins.cache.parse import CacheConfig
from interkube.server.dispatch import Dispatcher

QNAME = "www.example.org."
CLIENT = ("127.0.0.1", 53000)
BATCH = 20_000


def _answer_for(query_wire: bytes) -> bytes:
    """A response as an upstream would give it: one A record, EDNS echoed."""
    query = dns.message.from_wire(query_wire)
    resp = dns.message.make_response(query)
    resp.answer.append(dns.rrset.from_text(QNAME, 300, "IN", "A", "192.0.2.1"))
    return resp.to_wire()


class Upstream(Handler):
    """Stands where forward would be: answers from memory so the cache stores its reply."""

    plugin = "upstream"

    def __init__(self, response: bytes) -> None:
        self.response = response

    def fast(self, req: Request) -> bytes | None:
        return req.wire[:2] + self.response[2:]


class Static(MemoryHandler[bytes]):
    """The template floor: answers every question from one pre-built response."""

    plugin = "static"

    def build(self, req: Request, data: bytes, zone: str) -> bytes | None:
        return req.wire[:2] + data[2:]


class PassThrough(Handler):
    """A handler that only passes the query on: the cost of one more hop in the chain."""

    plugin = "hop"

    def fast(self, req: Request) -> bytes | None:
        return self.next.fast(req)


class IntCounter(Handler):
    """One plain int increment per answer: the least a counting handler can cost."""

    plugin = "int"

    def __init__(self) -> None:
        self.answers = 0

    def fast(self, req: Request) -> bytes | None:
        resp = self.next.fast(req)
        if resp is not None:
            self.answers += 1
        return resp


class PlainCounter(Handler):
    """Prometheus-style counting in plain Python objects, published at scrape time."""

    plugin = "counter"

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.rcodes = [0] * 16

    def fast(self, req: Request) -> bytes | None:
        resp = self.next.fast(req)
        if resp is not None:
            key = (req.zone, req.proto, req.query.qtype)
            self.requests[key] = self.requests.get(key, 0) + 1
            self.rcodes[resp[3] & 0x0F] += 1
        return resp


class ClientCounter(Handler):
    """The same counts through prometheus_client, per query."""

    plugin = "client"

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter

        registry = CollectorRegistry()
        self.requests = Counter("bench_requests", "", ["zone", "proto", "type"], registry=registry)
        self.rcodes = Counter("bench_responses", "", ["rcode"], registry=registry)

    def fast(self, req: Request) -> bytes | None:
        resp = self.next.fast(req)
        if resp is not None:
            self.requests.labels(req.zone, req.proto, str(req.query.qtype)).inc()
            self.rcodes.labels(str(resp[3] & 0x0F)).inc()
        return resp


def dispatcher(handlers: list[Handler]) -> Dispatcher:
    return Dispatcher({".": (Route(zone=".", server="dns://:53"), link(handlers))})


def one_query(disp: Dispatcher, wire: bytes) -> bytes | None:
    """Exactly what UdpEndpoint.handle does before sendto()."""
    q = parse_query(wire)
    assert q is not None
    return disp.fast(Request(wire, q, CLIENT, "udp"))


def measure(disp: Dispatcher, wire: bytes, budget: float) -> float:
    """Nanoseconds per query over one round of about ``budget`` seconds."""
    fast = disp.fast
    n = 0
    start = time.perf_counter_ns()
    deadline = start + int(budget * 1e9)
    now = start
    while now < deadline:
        for _ in range(BATCH):
            q = parse_query(wire)
            assert q is not None  # as UdpEndpoint.handle checks it
            fast(Request(wire, q, CLIENT, "udp"))
        n += BATCH
        now = time.perf_counter_ns()
    return (now - start) / n


def pin_one_core() -> int | None:
    """Pin this process to the last core it may use; the core's number, or None."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=0.5, help="seconds per round (default 0.5)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per variant (default 5)")
    opts = ap.parse_args(argv)
    cpu = pin_one_core()

    wire = dns.message.make_query(QNAME, "A", use_edns=0, payload=1232).to_wire()
    answer = _answer_for(wire)

    def cache_chain(front: list[Handler]) -> tuple[Dispatcher, CacheHandler]:
        cache = CacheHandler(CacheConfig(), ["."])
        return dispatcher([*front, cache, Upstream(answer)]), cache

    variants: dict[str, Callable[[], tuple[Dispatcher, CacheHandler | None]]] = {
        "template": lambda: (dispatcher([Static(ZoneSet(["."]), answer)]), None),
        "cache": lambda: cache_chain([]),
        "cache+hop": lambda: cache_chain([PassThrough()]),
        "cache+int": lambda: cache_chain([IntCounter()]),
        "cache+count": lambda: cache_chain([PlainCounter()]),
        "cache+client": lambda: cache_chain([ClientCounter()]),
    }
    print(f"python {sys.version.split()[0]}, pinned to cpu {cpu}, {opts.rounds} rounds x {opts.budget}s "
          f"per variant, interleaved; query: {QNAME} A with EDNS ({len(wire)} bytes)")
    built = {}
    for name, make in variants.items():
        disp, cache = make()
        first = one_query(disp, wire)  # the miss that stores the entry (or builds the template)
        assert first is not None, name
        if cache is not None:
            before = cache.stats.hits[0]
            assert one_query(disp, wire) is not None and cache.stats.hits[0] == before + 1, \
                f"{name}: the query is not a cache hit"
        built[name] = disp
    # Rounds interleave the variants, so that load from elsewhere on the machine spreads over
    # all of them rather than skewing one.
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(opts.rounds):
        for name, disp in built.items():
            samples[name].append(measure(disp, wire, opts.budget))
    best = {name: min(values) for name, values in samples.items()}
    print(f"  {'variant':13s} {'best ns':>8s} {'median ns':>10s} {'best queries/s':>15s}")
    for name, values in samples.items():
        print(f"  {name:13s} {best[name]:8.0f} {statistics.median(values):10.0f} {1e9 / best[name]:15,.0f}")
    base = best["cache"]
    print(f"cache hit / template render: {base / best['template']:.2f}x the time (best rounds)")
    for name in ("cache+hop", "cache+int", "cache+count", "cache+client"):
        extra = best[name] - base
        print(f"{name}: {extra:+.0f} ns per query = {100 * (1 - base / best[name]):.1f}% fewer queries/s "
              f"than the cache alone")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
