"""What the prometheus plugin costs the fast path (issue 3: at most 10% of its QPS).

Runs the UDP listener's per-datagram handler (parse, Request, dispatcher, chain, template) on
the same query many times, with and without `prometheus` in the chain, interleaving rounds and
keeping each variant's best, pinned to one core. This is the Python work per query; the socket
work around it (measured end to end by `python -m bench`) is the same for both variants, so the
end-to-end cost is smaller than the figure here.

    python bench/metrics_overhead.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import dns.message

from interkube.server.corefile.parser import parse_text
from interkube.server.dispatch import Dispatcher
from interkube.server.listeners import Listener, UdpEndpoint
from interkube.server.runtime import build
from interkube.server.services import Services

ZONE = """$ORIGIN example.org.
@ 3600 IN SOA ns h 1 7200 3600 1209600 3600
@ IN NS ns
ns IN A 127.0.0.1
www IN A 192.0.2.1
"""


def handler_for(corefile: str) -> UdpEndpoint:
    built = build(parse_text(corefile), "bench", Services())
    listener = Listener("dns", "127.0.0.1", 0, Dispatcher(next(iter(built.routes.values()))))
    endpoint = UdpEndpoint.__new__(UdpEndpoint)  # no socket: only the per-datagram path
    endpoint.listener = listener
    endpoint.inflight = set()
    endpoint.closed = False
    endpoint.outq = []
    endpoint._loop = asyncio.new_event_loop()
    return endpoint


def per_query_ns(endpoint: UdpEndpoint, wire: bytes, n: int) -> float:
    handle = endpoint.handle
    addr = ("127.0.0.1", 40000)
    t = time.perf_counter()
    for _ in range(n):
        handle(wire, addr)
    return (time.perf_counter() - t) / n * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="total time budget")
    opts = ap.parse_args()
    os.sched_setaffinity(0, {0})
    tmp = Path(tempfile.mkdtemp())
    (tmp / "example.db").write_text(ZONE)
    base = f"example.org:53 {{\n file {tmp}/example.db\n}}\n"
    with_metrics = f"example.org:53 {{\n prometheus 127.0.0.1:0\n file {tmp}/example.db\n}}\n"
    variants = {"file": handler_for(base), "prometheus + file": handler_for(with_metrics)}
    wire = dns.message.make_query("www.example.org.", "A").to_wire()
    for ep in variants.values():
        assert ep.handle(wire, ("127.0.0.1", 40000))  # warm: templates built, answer served
    best = {name: float("inf") for name in variants}
    deadline = time.monotonic() + opts.seconds
    rounds = 0
    while time.monotonic() < deadline:
        for name, ep in variants.items():
            best[name] = min(best[name], per_query_ns(ep, wire, 50_000))
        rounds += 1
    base_ns, metric_ns = best["file"], best["prometheus + file"]
    print(f"fast path, one core, best of {rounds} interleaved rounds of 50k queries:")
    for name, ns in best.items():
        print(f"  {name:20s} {ns:7.0f} ns/query   {1e9 / ns:10,.0f} queries/s")
    cost = 1 - base_ns / metric_ns
    print(f"  prometheus costs {cost:.1%} of the fast path's QPS (goal <= 10%: {'met' if cost <= 0.10 else 'short'})")


if __name__ == "__main__":
    main()
