"""What choosing a block by `view` costs a query answered from memory (issue 13, item 9: views
must not push queries to the slow path, and should cost little on the fast one).

Every variant serves the same 100 hosts entries (h000.example.org ...) from the block that
answers. Variants:

* `one block`            - the zone's one block (the baseline);
* `3 views, default`     - three blocks with a view before it (client network, question type,
  name by regular expression), none of which takes the queries: each query is refused by all
  three, then answered by the default block;
* `3 views, first`       - the same Corefile, the clients in the first view's network;
* `3 views, 1000 clients`- `3 views, default` from 1000 client addresses in turn (the answer
  each view remembers is per client address);
* `view reading id()`    - one view whose expression reads the query ID (nothing to remember:
  evaluated for every query), before the default block.

In process: the UDP listener's per-datagram handler, pinned to one core, best of interleaved
rounds (the Python work alone, as the thread's CPU time: steadier than wall time on a shared
machine); the ratio is against `one block` of the same run. The check at
the end says whether any variant sends a query to the slow path once warm.

    python bench/view_routing.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import dns.message

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.metrics_overhead import endpoint_for
from interkube.server.listeners import UdpEndpoint

HOSTS = [f"h{i:03d}.example.org" for i in range(100)]
ASKED = HOSTS[:20]
ROUND = 50_000
VIEWS = (
    "view network {\n        expr incidr(client_ip(), '10.0.0.0/8')\n    }",
    "view types {\n        expr type() in ['AAAA', 'TXT'] && proto() == 'tcp'\n    }",
    "view names {\n        expr name() matches '^internal\\\\..*\\\\.example\\\\.org\\\\.$'\n    }",
)
BY_ID = ("view ids {\n        expr id() == 1 || incidr(client_ip(), '10.0.0.0/8')\n    }",)


def block(view: str | None, answer: str) -> str:
    entries = "\n".join(f"        {answer}{i % 250 + 1} {name}" for i, name in enumerate(HOSTS))
    head = f"    {view}\n" if view else ""
    return f".:53 {{\n    bind 127.0.0.1\n{head}    hosts {{\n{entries}\n    }}\n}}\n"


def corefile(views: tuple[str, ...]) -> str:
    return "".join(block(v, f"198.51.{100 + i}.") for i, v in enumerate(views)) + block(None, "192.0.2.")


#: variant -> (its Corefile's views, the client addresses it asks from)
VARIANTS: dict[str, tuple[tuple[str, ...], list[str]]] = {
    "one block": ((), ["127.0.0.1"]),
    "3 views, default": (VIEWS, ["127.0.0.1"]),
    "3 views, first": (VIEWS, ["10.1.2.3"]),
    "3 views, 1000 clients": (VIEWS, [f"172.16.{i // 250}.{i % 250 + 1}" for i in range(1000)]),
    "view reading id()": (BY_ID, ["127.0.0.1"]),
}


def per_query_ns(ep: UdpEndpoint, wires: list[bytes], clients: list[tuple[str, int]], n: int) -> float:
    handle = ep.handle
    nw, nc = len(wires), len(clients)
    t = time.thread_time()  # CPU time: steadier than wall time on a shared machine
    for i in range(n):
        handle(wires[i % nw], clients[i % nc])
    return (time.thread_time() - t) / n * 1e9


async def run(seconds: float) -> None:
    os.sched_setaffinity(0, {0})
    wires = [dns.message.make_query(n, "A").to_wire() for n in ASKED]
    variants = {}
    for name, (views, addresses) in VARIANTS.items():
        ep = endpoint_for(corefile(views))
        clients = [(a, 40000) for a in addresses]
        for client in clients[:50]:
            for wire in wires:
                while ep.handle(wire, client) is None:  # (building on the fast path has a budget per second)
                    await asyncio.sleep(0.01)
        variants[name] = (ep, clients)
    best = {name: float("inf") for name in variants}
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        for name, (ep, clients) in variants.items():
            best[name] = min(best[name], per_query_ns(ep, wires, clients, ROUND))
        rounds += 1
    slow = [name for name, (ep, clients) in variants.items()
            if any(ep.handle(w, c) is None for w in wires for c in clients[:50])]
    for ep, _ in variants.values():
        ep.close()
    base = best["one block"]
    print(f"in process (Python work only, CPU time), one core, best of {rounds} interleaved rounds of {ROUND:,} "
          "queries:")
    for name, ns in best.items():
        print(f"  {name:22s} {ns:7.0f} ns/query  {ns - base:+6.0f} ns   {1e9 / ns:10,.0f} queries/s  "
              f"({base / ns:.2f}x)")
    print(f"  queries sent to the slow path once warm: {', '.join(slow) if slow else 'none'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="time budget (default 8)")
    asyncio.run(run(ap.parse_args().seconds))


if __name__ == "__main__":
    main()
