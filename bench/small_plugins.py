"""What the small plugins cost a block that answers from memory (issue 13, item 8: a plugin that
only edits answers must keep them on the fast path).

The block serves 100 hosts entries (h000.example.org ...), asked with EDNS (payload 4096, so
that bufsize has a size to cap). Variants, each the same block with one more directive:

* `hosts`               - the block alone (the baseline);
* `+ bufsize`, `+ header` (response set ra, query set rd), `+ minimal`, `+ loadbalance`,
  `+ nsid` (queries without the option, which pass; and `+ nsid, asked` with it, which get it),
  `+ local`, `+ any`, `+ chaos` (every name passes these three), `+ metadata`;
* `all of them`         - every directive above in one block.

In process: the UDP listener's per-datagram handler on each variant's queries, pinned to one
core, best of interleaved rounds (the Python work alone: the figure that shows what a plugin
adds per query, and that none sends queries to the slow path). End to end: interkube pinned to
CPU 0 (`-quiet`), the harness's C load generator (bench/loadgen) on CPU 1 in closed loop, for
the baseline and `all of them`; median QPS over the rounds, ratio against the baseline of the
same run.

    python bench/small_plugins.py [--rounds 3] [--duration 4] [--seconds 8]
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
from pathlib import Path

import dns.edns
import dns.message

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.generators import Loadgen, LoadSpec
from bench.metrics_overhead import endpoint_for
from bench.procs import Proc, stop_all, wait_until
from bench.rewrite_rules import per_query_ns
from testkit.servers import free_port, query

HOSTS = [f"h{i:03d}.example.org" for i in range(100)]
ASKED = HOSTS[:20]
#: variant -> (the directives added to the block, whether queries carry an NSID option)
VARIANTS: dict[str, tuple[tuple[str, ...], bool]] = {
    "hosts": ((), False),
    "+ bufsize": (("bufsize 1232",), False),
    "+ header": (("header {\n        response set ra\n        query set rd\n    }",), False),
    "+ minimal": (("minimal",), False),
    "+ loadbalance": (("loadbalance",), False),
    "+ nsid": (("nsid bench",), False),
    "+ nsid, asked": (("nsid bench",), True),
    "+ local": (("local",), False),
    "+ any": (("any",), False),
    "+ chaos": (("chaos",), False),
    "+ metadata": (("metadata",), False),
}
ALL = ("bufsize 1232", "header {\n        response set ra\n        query set rd\n    }", "minimal", "loadbalance",
       "nsid bench", "local", "any", "chaos", "metadata")
VARIANTS["all of them"] = (ALL, False)


def corefile(directives: tuple[str, ...], port: int = 53) -> str:
    entries = "\n".join(f"        192.0.2.{i + 1} {name}" for i, name in enumerate(HOSTS))
    lines = "".join(f"    {d}\n" for d in directives)
    return f".:{port} {{\n    bind 127.0.0.1\n{lines}    hosts {{\n{entries}\n    }}\n}}\n"


def wires(nsid: bool) -> list[bytes]:
    options: list[dns.edns.Option] | None = [dns.edns.GenericOption(dns.edns.OptionType.NSID, b"")] if nsid else None
    return [dns.message.make_query(n, "A", use_edns=0, payload=4096, options=options).to_wire() for n in ASKED]


async def in_process(seconds: float) -> dict[str, float]:
    os.sched_setaffinity(0, {0})
    variants = {}
    for name, (directives, nsid) in VARIANTS.items():
        ep = endpoint_for(corefile(directives))
        asked = wires(nsid)
        for wire in asked:
            answer = ep.handle(wire, ("127.0.0.1", 40000))
            while answer is None:  # (building on the fast path has a budget per second)
                await asyncio.sleep(0.01)
                answer = ep.handle(wire, ("127.0.0.1", 40000))
        variants[name] = (ep, asked)
    best = {name: float("inf") for name in variants}
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        for name, (ep, asked) in variants.items():
            best[name] = min(best[name], per_query_ns(ep, asked, 50_000))
        rounds += 1
    slow = [name for name, (ep, asked) in variants.items()
            if any(ep.handle(wire, ("127.0.0.1", 40000)) is None for wire in asked)]
    for ep, _ in variants.values():
        ep.close()
    base = best["hosts"]
    print(f"in process (Python work only), one core, best of {rounds} interleaved rounds of 50k queries:")
    for name, ns in best.items():
        print(f"  {name:16s} {ns:7.0f} ns/query  {ns - base:+6.0f} ns   {1e9 / ns:10,.0f} queries/s  "
              f"({base / ns:.2f}x)")
    print(f"  queries sent to the slow path once warm: {', '.join(slow) if slow else 'none'}")
    return best


def answering(port: int) -> bool:
    return bool(query(ASKED[0], "A", port, timeout=0.3).answer)


def end_to_end(tmp: Path, rounds: int, duration: float) -> dict[str, float]:
    gen = Loadgen()
    measured = {"hosts": VARIANTS["hosts"][0], "all of them": ALL}
    qps: dict[str, list[float]] = {name: [] for name in measured}
    queries = tmp / "queries.txt"
    queries.write_text("".join(f"{n} A\n" for n in ASKED))
    try:
        for r in range(rounds):
            for name, directives in measured.items():
                port = free_port()
                core = tmp / f"Corefile-{r}-{len(directives)}"
                core.write_text(corefile(directives, port))
                server = Proc(name, [sys.executable, "-m", "interkube", "serve", "-conf", str(core), "-quiet"],
                              tmp / f"server-{r}.log", cpus=(0,)).start()
                wait_until(functools.partial(answering, port), 15, server, "answering")
                gen.run(LoadSpec(port=port, query_file=queries, duration=1.0, cpus=(1,)))  # warm up
                result = gen.run(LoadSpec(port=port, query_file=queries, duration=duration, cpus=(1,)))
                if result.rcodes.get("NOERROR", 0) < result.received:
                    raise SystemExit(f"{name}: answers other than NOERROR: {result.rcodes}")
                qps[name].append(result.qps)
                server.stop()
    finally:
        stop_all()
    med = {name: statistics.median(v) for name, v in qps.items()}
    print(f"end to end, server on CPU 0, loadgen (closed loop) on CPU 1, median of {rounds} rounds:")
    for name, v in med.items():
        print(f"  {name:16s} {v:10,.0f} queries/s  ({v / med['hosts']:.2f}x)   "
              f"rounds: {', '.join(f'{x:,.0f}' for x in qps[name])}")
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="end-to-end rounds per variant (default 3)")
    ap.add_argument("--duration", type=float, default=4.0, help="seconds of load per end-to-end round")
    ap.add_argument("--seconds", type=float, default=8.0, help="time budget of the in-process part")
    opts = ap.parse_args()
    asyncio.run(in_process(opts.seconds))
    end_to_end(Path(tempfile.mkdtemp(prefix="interkube-bench-small-")), opts.rounds, opts.duration)


if __name__ == "__main__":
    main()
