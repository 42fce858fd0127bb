"""autopath: queries per lookup and lookup latency for a `ndots:5` pod's short name, with and
without autopath (issue 13, item 5: a pod's short name costs 1 query instead of up to 6).

The cluster is a snapshot file: namespace `shop` with Services web-0 ... web-9, namespaces ns-0
... ns-19 with svc-0 ... svc-9 each, and the pod shop/client at 127.0.4.5. interkube serves it
on CPU 0 (`-quiet`) with the same block but for the autopath line:

    .:PORT {
        bind 127.0.0.1
        autopath @kubernetes          # (the "with" variant only)
        kubernetes cluster.local { snapshot FILE; pods verified }
        cache 30
        forward . 127.0.0.1:UP        # loadgen's responder (bench/loadgen), on CPU 1
    }

The client runs in this process on CPU 1, bound to the pod's address, and resolves as glibc's
getaddrinfo does in a pod (`options ndots:5`, `search shop.svc.cluster.local svc.cluster.local
cluster.local`): a name with fewer than 5 dots is tried with each search domain, then as
written; for each name tried, A and AAAA go out together; the first name with records in either
answer ends the lookup. Three kinds of short names, each asked over and over (cache warm):

* `own`       web-3            - a Service of the pod's namespace (the first name answers);
* `other`     svc-3.ns-7       - a Service of another namespace (the second name answers);
* `external`  host-3.example.com - a name outside the cluster (the last name answers).

Per variant and kind: queries sent per lookup, lookup latency p50/p99 with one lookup at a time,
then for an even mix of the kinds with 16 lookups in flight: lookups per second and the
server's CPU per lookup (steadier than rates on a shared machine). Rounds are interleaved, each
variant on a fresh server; the medians of the rounds and the ratios without/with are printed.

    python bench/autopath_lookups.py [--rounds 3] [--duration 3]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import dns.message

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.generators import Loadgen
from bench.procs import (
    GENERATOR_CPU,
    SERVER_CPU,
    Adopted,
    CpuMeter,
    Proc,
    proc_cpu_seconds,
    settle,
    stop_all,
    wait_until,
)
from testkit.fakekube import pod, service, write_snapshot
from testkit.servers import free_port, query

POD_IP = "127.0.4.5"
NDOTS = 5
SEARCH = ("shop.svc.cluster.local", "svc.cluster.local", "cluster.local")
KINDS = {
    "own": [f"web-{i}" for i in range(10)],
    "other": [f"svc-{i}.ns-{j}" for i in range(10) for j in (7, 13)],
    "external": [f"host-{i}.example.com" for i in range(20)],
}
VARIANTS = ("without", "with")
#: Lookups in flight in the throughput phase.
WINDOW = 16
TIMEOUT = 2.0


def cluster(path: Path) -> Path:
    objects = [service("shop", f"web-{i}", cluster_ips=[f"10.96.0.{10 + i}"]) for i in range(10)]
    objects += [service(f"ns-{j}", f"svc-{i}", cluster_ips=[f"10.96.{1 + j}.{10 + i}"])
                for j in range(20) for i in range(10)]
    objects.append(pod("shop", "client", POD_IP))
    return write_snapshot(path, objects)


def corefile(variant: str, port: int, snapshot: Path, upstream: int) -> str:
    autopath = "    autopath @kubernetes\n" if variant == "with" else ""
    return (f".:{port} {{\n    bind 127.0.0.1\n{autopath}"
            f"    kubernetes cluster.local {{\n        snapshot {snapshot}\n        pods verified\n    }}\n"
            f"    cache 30\n    forward . 127.0.0.1:{upstream}\n}}\n")


class Client(asyncio.DatagramProtocol):
    """UDP queries from the pod's address, answers matched by ID."""

    def __init__(self) -> None:
        self.waiting: dict[int, asyncio.Future[bytes]] = {}
        self.next_id = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.sent = 0
        self.lost = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # (what a datagram endpoint gets)

    def datagram_received(self, data: bytes, addr: object) -> None:
        fut = self.waiting.pop(int.from_bytes(data[:2], "big"), None)
        if fut is not None and not fut.done():
            fut.set_result(data)

    async def ask(self, tail: bytes) -> bytes:
        """The answer to the query whose bytes after the ID are ``tail`` (b"" when none came)."""
        assert self.transport is not None
        self.next_id = qid = (self.next_id + 1) & 0xFFFF
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiting[qid] = fut
        self.transport.sendto(qid.to_bytes(2, "big") + tail)
        self.sent += 1
        try:
            return await asyncio.wait_for(fut, TIMEOUT)
        except TimeoutError:
            self.lost += 1
            return b""
        finally:
            self.waiting.pop(qid, None)


@functools.cache
def tail(name: str, rdtype: str) -> bytes:
    return dns.message.make_query(name, rdtype).to_wire()[2:]


def candidates(name: str) -> list[str]:
    """The names glibc tries for ``name``, in order (ndots:5 and the pod's search list)."""
    with_search = [f"{name}.{domain}" for domain in SEARCH]
    return [*with_search, name] if name.count(".") < NDOTS else [name, *with_search]


def has_records(resp: bytes) -> bool:
    return len(resp) >= 12 and resp[3] & 0x0F == 0 and resp[6:8] != b"\x00\x00"


async def lookup(client: Client, name: str) -> tuple[int, bool]:
    """(queries sent, found) for one lookup of ``name``."""
    sent = 0
    for candidate in candidates(name):
        a, aaaa = await asyncio.gather(client.ask(tail(candidate, "A")), client.ask(tail(candidate, "AAAA")))
        sent += 2
        if has_records(a) or has_records(aaaa):
            return sent, True
    return sent, False


@dataclass
class Figures:
    """One variant's figures in one round."""

    queries: dict[str, float] = field(default_factory=dict)     # kind -> queries per lookup
    p50: dict[str, float] = field(default_factory=dict)         # kind -> µs
    p99: dict[str, float] = field(default_factory=dict)
    rate: float = 0.0                                           # lookups/s, the mix, WINDOW in flight
    cpu: float = 0.0                                            # server CPU µs per lookup, the mix
    failed: int = 0                                             # lookups that found nothing
    other: float = 0.0                                          # % of a core used by other programs


async def measure(port: int, server: Proc, duration: float) -> Figures:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(Client, local_addr=(POD_IP, 0),
                                                            remote_addr=("127.0.0.1", port))
    out = Figures()
    try:
        for names in KINDS.values():  # warm: every name's answers built and cached, twice
            for _ in range(2):
                for name in names:
                    await lookup(client, name)
        for kind, names in KINDS.items():
            latencies: list[float] = []
            queries = 0
            end = time.perf_counter() + duration / 2 / len(KINDS)
            i = 0
            while time.perf_counter() < end:
                started = time.perf_counter()
                sent, found = await lookup(client, names[i % len(names)])
                latencies.append(time.perf_counter() - started)
                queries += sent
                out.failed += not found
                i += 1
            latencies.sort()
            out.queries[kind] = queries / len(latencies)
            out.p50[kind] = latencies[len(latencies) // 2] * 1e6
            out.p99[kind] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e6
        mix = [name for group in zip(*KINDS.values(), strict=False) for name in group]
        done = 0
        end = time.perf_counter() + duration / 2

        async def worker(offset: int) -> None:
            nonlocal done
            i = offset
            while time.perf_counter() < end:
                _, found = await lookup(client, mix[i % len(mix)])
                out.failed += not found
                done += 1
                i += WINDOW

        cpu0, t0 = proc_cpu_seconds(server.pid), time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(WINDOW)))
        cpu1, t1 = proc_cpu_seconds(server.pid), time.perf_counter()
        out.rate = done / (t1 - t0)
        out.cpu = (cpu1 - cpu0) / done * 1e6
    finally:
        transport.close()
    if client.lost:
        print(f"  ({client.lost} of {client.sent} queries unanswered within {TIMEOUT:g} s)")
    return out


def answering(port: int) -> bool:
    return bool(query("web-0.shop.svc.cluster.local", "A", port, timeout=0.3).answer)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="rounds per variant (default 3)")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds of lookups per variant and round (default 3)")
    ap.add_argument("--settle", type=float, default=10.0,
                    help="seconds to wait at most, before each run, for other programs to go quiet (default 10)")
    opts = ap.parse_args()
    two_cores = (os.cpu_count() or 1) >= 2
    if two_cores:
        os.sched_setaffinity(0, {GENERATOR_CPU})  # the client; the server gets SERVER_CPU
    tmp = Path(tempfile.mkdtemp(prefix="interkube-bench-autopath-"))
    snapshot = cluster(tmp / "cluster.yaml")
    gen = Loadgen()
    up_port = free_port()
    cpus = (SERVER_CPU,) if two_cores else None
    results: dict[str, list[Figures]] = {v: [] for v in VARIANTS}
    try:
        upstream = Proc("upstream", gen.responder_argv(up_port, ttl=300), tmp / "upstream.log",
                        cpus=(GENERATOR_CPU,) if two_cores else None).start()
        wait_until(lambda: bool(query("x.example.com", "A", up_port, timeout=0.3).answer), 15, upstream, "answering")
        for r in range(opts.rounds):
            for variant in VARIANTS:
                port = free_port()
                path = tmp / f"Corefile-{r}-{variant}"
                path.write_text(corefile(variant, port, snapshot, up_port))
                server = Proc(f"interkube {variant} autopath",
                              [sys.executable, "-m", "interkube", "serve", "-conf", path, "-quiet"],
                              tmp / f"{path.name}.log", cpus=cpus).start()
                try:
                    wait_until(functools.partial(answering, port), 30, server, "answering")
                    ours: list[Proc | Adopted] = [upstream, server, Adopted("client", os.getpid())]
                    settle(ours, limit=opts.settle)
                    with CpuMeter(ours) as meter:
                        figures = asyncio.run(measure(port, server, opts.duration))
                    figures.other = meter.foreign(0.0) / meter.wall * 100
                    results[variant].append(figures)
                finally:
                    server.stop()
    finally:
        stop_all()
    report(results, opts.rounds)


def report(results: dict[str, list[Figures]], rounds: int) -> None:
    def med(variant: str, pick: str, kind: str = "") -> float:
        values = [getattr(f, pick)[kind] if kind else getattr(f, pick) for f in results[variant]]
        return float(statistics.median(values))

    print(f"server on CPU {SERVER_CPU} (interkube, kubernetes from a snapshot, cache 30, forward to loadgen's "
          f"responder), client on CPU {GENERATOR_CPU} from the pod's address, resolving like glibc "
          f"(ndots:{NDOTS}, search {' '.join(SEARCH)}, A and AAAA per name); median of {rounds} rounds")
    print(f"{'':10s} {'queries/lookup':>20s} {'p50 µs (1 in flight)':>24s} {'p99 µs':>20s}")
    print(f"{'kind':10s} {'without':>9s} {'with':>6s} {'ratio':>5s}  {'without':>9s} {'with':>6s} {'ratio':>6s}  "
          f"{'without':>8s} {'with':>6s} {'ratio':>5s}")
    for kind in KINDS:
        q0, q1 = med("without", "queries", kind), med("with", "queries", kind)
        a0, a1 = med("without", "p50", kind), med("with", "p50", kind)
        b0, b1 = med("without", "p99", kind), med("with", "p99", kind)
        print(f"{kind:10s} {q0:9.1f} {q1:6.1f} {q0 / q1:4.1f}x  {a0:9.0f} {a1:6.0f} {a0 / a1:5.2f}x  "
              f"{b0:8.0f} {b1:6.0f} {b0 / b1:4.2f}x")
    r0, r1 = med("without", "rate"), med("with", "rate")
    c0, c1 = med("without", "cpu"), med("with", "cpu")
    print(f"the three kinds mixed, {WINDOW} lookups in flight: {r0:,.0f} -> {r1:,.0f} lookups/s ({r1 / r0:.2f}x), "
          f"server CPU per lookup {c0:.0f} -> {c1:.0f} µs ({c0 / c1:.2f}x less)")
    noisy = " - a noisy machine" if max(med(v, "other") for v in VARIANTS) > 10 else ""
    print(f"other programs used {med('without', 'other'):.0f}% / {med('with', 'other'):.0f}% of a core during the "
          f"runs without / with autopath (median){noisy}")
    failed = {v: sum(f.failed for f in results[v]) for v in VARIANTS}
    if any(failed.values()):
        print(f"lookups that found nothing: {failed}")


if __name__ == "__main__":
    main()
