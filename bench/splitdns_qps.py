"""splitdns answers from memory at the kubernetes plugin's speed (issue 15, Performance: QPS
within 10% of the kubernetes plugin's, same run).

One Corefile, one cluster (a snapshot: a headless Service with --servers ready endpoints named
db-0 ... db-N), two ways to ask for the same pods' addresses:

* `kubernetes` - the endpoints' own names, db-N.db-headless.shop.svc.cluster.local (the
  kubernetes plugin's answers: the baseline);
* `splitdns`   - the servers' public names, db-N.db.example.com, which the splitdns rule maps to
  those endpoints (answered under the public name, after the kubernetes handler passed them on).

Each round starts a fresh server pinned to CPU 0 and runs the harness's C load generator
(bench/loadgen) on CPU 1 in closed loop, once per query set (after a warm-up in which every
answer is built); rounds alternate the order. The median QPS of each and the ratio are printed.

    python bench/splitdns_qps.py [--rounds 5] [--duration 4] [--servers 100]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.generators import Loadgen, LoadSpec
from bench.procs import Proc, stop_all, wait_until
from testkit.fakekube import endpoint_slice, service, write_snapshot
from testkit.servers import free_port, query

GOAL = 0.9
RULE = r"pod ^db-([0-9]+)\.db\.example\.com\.$ db-{1}.db-headless.shop.svc.cluster.local."


def pod_ip(i: int) -> str:
    return f"10.244.{i // 250}.{i % 250 + 1}"


def cluster(path: Path, servers: int) -> Path:
    endpoints = [{"ip": pod_ip(i), "hostname": f"db-{i}"} for i in range(servers)]
    return write_snapshot(path, [service("shop", "db-headless", headless=True, ports=[("db", 2113, "TCP")]),
                                 endpoint_slice("shop", "db-headless-a", "db-headless", endpoints,
                                                ports=[("db", 2113, "TCP")])])


def corefile(port: int, snapshot: Path) -> str:
    return f""".:{port} {{
    bind 127.0.0.1
    kubernetes cluster.local {{
        snapshot {snapshot}
    }}
    splitdns db.example.com {{
        {RULE}
    }}
}}
"""


NAMES = {"kubernetes": "db-{}.db-headless.shop.svc.cluster.local", "splitdns": "db-{}.db.example.com"}


def answering(port: int, name: str, ip: str) -> bool:
    return [rd.to_text() for rrset in query(name, "A", port, timeout=0.3).answer for rd in rrset] == [ip]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    ap.add_argument("--duration", type=float, default=4.0, help="seconds of load per query set and round (default 4)")
    ap.add_argument("--servers", type=int, default=100, help="database servers (names) asked (default 100)")
    opts = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="interkube-bench-splitdns-"))
    snapshot = cluster(tmp / "cluster.yaml", opts.servers)
    files = {}
    for variant, pattern in NAMES.items():
        files[variant] = tmp / f"{variant}.txt"
        files[variant].write_text("".join(f"{pattern.format(i)} A\n" for i in range(opts.servers)))
    gen = Loadgen()
    qps: dict[str, list[float]] = {v: [] for v in NAMES}
    try:
        for r in range(opts.rounds):
            port = free_port()
            path = tmp / f"Corefile-{r}"
            path.write_text(corefile(port, snapshot))
            server = Proc("interkube", [sys.executable, "-m", "interkube", "serve", "-conf", path, "-quiet"],
                          tmp / f"server-{r}.log", cpus=(0,)).start()
            wait_until(functools.partial(answering, port, NAMES["splitdns"].format(0), pod_ip(0)), 30, server,
                       "answering")
            order = list(NAMES) if r % 2 == 0 else list(reversed(NAMES))
            for variant in order:
                gen.run(LoadSpec(port=port, query_file=files[variant], duration=1.0, cpus=(1,)))  # built
            for variant in order:
                result = gen.run(LoadSpec(port=port, query_file=files[variant], duration=opts.duration, cpus=(1,)))
                if result.rcodes.get("NOERROR", 0) < result.received:
                    raise SystemExit(f"{variant}: answers other than NOERROR: {result.rcodes}")
                qps[variant].append(result.qps)
            server.stop()
    finally:
        stop_all()
    med = {v: statistics.median(x) for v, x in qps.items()}
    # Each round's ratio pairs two runs on one server a few seconds apart: less of the machine's
    # noise than the ratio of the medians, which is printed beside it.
    ratio = statistics.median(s / k for s, k in zip(qps["splitdns"], qps["kubernetes"], strict=True))
    print(f"server on CPU 0, loadgen (closed loop) on CPU 1, {opts.servers} names, median of {opts.rounds} rounds:")
    for v, m in med.items():
        print(f"  {v:12s} {m:10,.0f} queries/s   rounds: {', '.join(f'{x:,.0f}' for x in qps[v])}")
    of_medians = med["splitdns"] / med["kubernetes"]
    print(f"splitdns / kubernetes: {ratio:.2f}x, median of the rounds' ratios ({of_medians:.2f}x of the medians); "
          f"goal >= {GOAL:.2f}x: {'met' if ratio >= GOAL else 'short'}")


if __name__ == "__main__":
    main()
