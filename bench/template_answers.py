"""What answering from a `template` costs against answering the same records from `hosts` entries
(issue 13, item 2: template answers are built once per question and served from memory), with
CoreDNS running the same template beside them (same run).

Three servers answer 100 names ip-10-0-0-1.example ... ip-10-0-0-100.example with their
addresses:

* `interkube hosts`     - 100 inline hosts entries (the baseline: answers from memory);
* `interkube template`  - CoreDNS's "ip-a-b-c-d" template (a regex with named groups);
* `coredns template`    - the same template in CoreDNS 1.15 (when the peer is built).

Each server is pinned to CPU 0 and the harness's C load generator (bench/loadgen) to CPU 1 in
closed loop; rounds are interleaved, each on a fresh server; the median QPS of each variant and
its ratio to the baseline of the same run are printed.

    python bench/template_answers.py [--rounds 3] [--duration 4]
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
from testkit.peers import find_peer
from testkit.servers import free_port, query

NAMES = [f"ip-10-0-0-{i}.example" for i in range(1, 101)]
TEMPLATE = r"""
    template IN A example {
        match (^|[.])ip-(?P<a>[0-9]*)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
        answer "{{ .Name }} 60 IN A {{ .Group.a }}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
    }
"""


def corefile(variant: str, port: int) -> str:
    if variant.endswith("hosts"):
        entries = "\n".join(f"        10.0.0.{i} {name}" for i, name in enumerate(NAMES, 1))
        body = f"    hosts {{\n        ttl 60\n{entries}\n    }}\n"
    else:
        body = TEMPLATE
    return f".:{port} {{\n    bind 127.0.0.1\n{body}}}\n"


def command(variant: str, path: Path, coredns: Path | None) -> list[str | Path]:
    if variant.startswith("coredns"):
        assert coredns is not None
        return [coredns, "-conf", path]
    return [sys.executable, "-m", "interkube", "serve", "-conf", path, "-quiet"]


def answering(port: int) -> bool:
    return [rd.to_text() for rrset in query(NAMES[0], "A", port, timeout=0.3).answer for rd in rrset] == ["10.0.0.1"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="rounds per variant (default 3)")
    ap.add_argument("--duration", type=float, default=4.0, help="seconds of load per round (default 4)")
    opts = ap.parse_args()
    coredns = find_peer("coredns")
    variants = ["interkube hosts", "interkube template"] + (["coredns template"] if coredns else [])
    tmp = Path(tempfile.mkdtemp(prefix="interkube-bench-template-"))
    queries = tmp / "queries.txt"
    queries.write_text("".join(f"{name} A\n" for name in NAMES))
    gen = Loadgen()
    qps: dict[str, list[float]] = {v: [] for v in variants}
    try:
        for r in range(opts.rounds):
            for variant in variants:
                port = free_port()
                path = tmp / f"Corefile-{r}-{variant.replace(' ', '-')}"
                path.write_text(corefile(variant, port))
                server = Proc(variant, command(variant, path, coredns), tmp / f"{path.name}.log", cpus=(0,)).start()
                wait_until(functools.partial(answering, port), 15, server, "answering")
                gen.run(LoadSpec(port=port, query_file=queries, duration=1.0, cpus=(1,)))  # every answer built
                result = gen.run(LoadSpec(port=port, query_file=queries, duration=opts.duration, cpus=(1,)))
                if result.rcodes.get("NOERROR", 0) < result.received:
                    raise SystemExit(f"{variant}: answers other than NOERROR: {result.rcodes}")
                qps[variant].append(result.qps)
                server.stop()
    finally:
        stop_all()
    med = {v: statistics.median(x) for v, x in qps.items()}
    base = med["interkube hosts"]
    print(f"server on CPU 0, loadgen (closed loop) on CPU 1, 100 names, median of {opts.rounds} rounds:")
    for v, m in med.items():
        print(f"  {v:20s} {m:10,.0f} queries/s  ({m / base:.2f}x interkube hosts)   "
              f"rounds: {', '.join(f'{x:,.0f}' for x in qps[v])}")
    if not coredns:
        print("  (CoreDNS not built: scripts/build-peers)")


if __name__ == "__main__":
    main()
