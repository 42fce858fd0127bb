"""What the prometheus plugin costs the fast path (issue 3: at most 10% of its QPS).

Two measurements, both with and without `prometheus` in the chain, rounds interleaved:

* end to end (the figure the goal is about): interkube pinned to CPU 0 answering a file-plugin
  record over UDP, the harness's C load generator (bench/loadgen) on CPU 1 in closed loop;
  each variant's median QPS;
* in process: the UDP listener's per-datagram handler (parse, Request, dispatcher, chain,
  template) on the same query many times, pinned to one core, each variant's best. This is the
  Python work alone, without the socket work that both variants share.

    python bench/metrics_overhead.py [--rounds 3] [--duration 4] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dns.message

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.generators import Loadgen, LoadSpec
from bench.procs import Proc, stop_all, wait_until
from interkube.corefile.parser import parse_text
from interkube.plugin.services import Services
from interkube.server.dispatch import Dispatcher
from interkube.server.listeners import Listener, UdpEndpoint
from interkube.server.runtime import build
from testkit.servers import free_port, query

ZONE = """$ORIGIN example.org.
@ 3600 IN SOA ns h 1 7200 3600 1209600 3600
@ IN NS ns
ns IN A 127.0.0.1
www IN A 192.0.2.1
"""


def endpoint_for(corefile: str) -> UdpEndpoint:
    """The UDP listener of ``corefile``'s one server block, on a socket nothing sends to: the
    benchmark calls its per-datagram handler directly. Needs a running event loop."""
    built = build(parse_text(corefile), "bench", Services())
    [(lkey, chains)] = built.chains.items()
    listener = Listener("dns", "127.0.0.1", 0, Dispatcher(chains, built.views.get(lkey)))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return UdpEndpoint(listener, sock)


def per_query_ns(endpoint: UdpEndpoint, wire: bytes, n: int) -> float:
    handle = endpoint.handle
    addr = ("127.0.0.1", 40000)
    t = time.perf_counter()
    for _ in range(n):
        handle(wire, addr)
    return (time.perf_counter() - t) / n * 1e9


def answering(port: int) -> bool:
    return bool(query("www.example.org.", "A", port, timeout=0.3).answer)


def end_to_end(tmp: Path, rounds: int, duration: float) -> None:
    """Closed-loop QPS of interkube with and without prometheus, from the C load generator."""
    queries = tmp / "queries.txt"
    queries.write_text("www.example.org A\n")
    gen = Loadgen()
    qps: dict[str, list[float]] = {"file": [], "prometheus + file": []}
    try:
        for r in range(rounds):
            for name in qps:
                port, http = free_port(), free_port()
                extra = f" prometheus 127.0.0.1:{http}\n" if name.startswith("prometheus") else ""
                core = tmp / f"Corefile-{r}-{len(extra)}"
                core.write_text(f"example.org:{port} {{\n bind 127.0.0.1\n{extra} file {tmp}/example.db\n}}\n")
                server = Proc(name, [sys.executable, "-m", "interkube", "serve", "-conf", str(core), "-quiet"],
                              tmp / f"{name}-{r}.log", cpus=(0,)).start()
                wait_until(functools.partial(answering, port), 15, server, "answering")  # raising: not up yet
                gen.run(LoadSpec(port=port, query_file=queries, duration=1.0, cpus=(1,)))  # warm up
                result = gen.run(LoadSpec(port=port, query_file=queries, duration=duration, cpus=(1,)))
                qps[name].append(result.qps)
                server.stop()
    finally:
        stop_all()
    med = {name: statistics.median(v) for name, v in qps.items()}
    print(f"end to end, server on CPU 0, loadgen (closed loop) on CPU 1, median of {rounds} rounds:")
    for name, v in med.items():
        print(f"  {name:20s} {v:10,.0f} queries/s   rounds: {', '.join(f'{x:,.0f}' for x in qps[name])}")
    cost = 1 - med["prometheus + file"] / med["file"]
    print(f"  prometheus costs {cost:.1%} of the fast path's QPS end to end "
          f"(goal <= 10%: {'met' if cost <= 0.10 else 'short'})")


async def in_process(tmp: Path, seconds: float) -> None:
    """The per-datagram handler's time with and without prometheus, on one core."""
    os.sched_setaffinity(0, {0})
    base = f"example.org:53 {{\n file {tmp}/example.db\n}}\n"
    with_metrics = f"example.org:53 {{\n prometheus 127.0.0.1:0\n file {tmp}/example.db\n}}\n"
    variants = {"file": endpoint_for(base), "prometheus + file": endpoint_for(with_metrics)}
    wire = dns.message.make_query("www.example.org.", "A").to_wire()
    for ep in variants.values():
        assert ep.handle(wire, ("127.0.0.1", 40000))  # warm: templates built, answer served
    best = {name: float("inf") for name in variants}
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        for name, ep in variants.items():
            best[name] = min(best[name], per_query_ns(ep, wire, 50_000))
        rounds += 1
    for ep in variants.values():
        ep.close()
    base_ns, metric_ns = best["file"], best["prometheus + file"]
    print(f"in process (Python work only), one core, best of {rounds} interleaved rounds of 50k queries:")
    for name, ns in best.items():
        print(f"  {name:20s} {ns:7.0f} ns/query   {1e9 / ns:10,.0f} queries/s")
    cost = 1 - base_ns / metric_ns
    print(f"  prometheus adds {cost:.1%} to the Python work per query")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="time budget of the in-process part")
    ap.add_argument("--rounds", type=int, default=3, help="end-to-end rounds per variant")
    ap.add_argument("--duration", type=float, default=4.0, help="seconds of load per end-to-end round")
    opts = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    (tmp / "example.db").write_text(ZONE)
    end_to_end(tmp, opts.rounds, opts.duration)
    asyncio.run(in_process(tmp, opts.seconds))


if __name__ == "__main__":
    main()
