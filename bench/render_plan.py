"""Benchmark: ``interkube render`` of a 50-cluster plan, goal < 1 s.

Run ``python bench/render_plan.py`` (or ``python -m bench.render_plan``) from the repository root.
The plan is what ``interkube plan --clusters 50`` writes (50 clusters, each with its DNS Service),
and every cluster forwards one namespace to the next, so the generated Corefile has 50 cluster
zones, 50 forwarded namespaces and a 50-way ``cluster.all``. Everything runs pinned to one core.

Three figures, each the best and the median of ``--repeat`` runs:

* **command**: ``interkube render --plan PLAN --cluster cluster1 -o DIR`` as a user runs it, a
  fresh process each time (interpreter start, imports, the plan read, the Corefile generated and
  checked by the parser, the manifests written to a kustomize directory); the goal applies here;
* **command --tls**: the same with ``--tls --mtls`` (cert-manager certificates, the DoT front);
* **in-process**: ``render_server`` and ``output.stream`` alone, without the process start.

Beside them, in the same run, ``interkube --version`` (the interpreter and the CLI's start, which
every command pays) so that what is render's own shows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Run as a script from a checkout: interkube from its src/ (ruff takes sys.path.insert calls
# for a bootstrap).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from interkube.deploy.options import parse
from interkube.deploy.output import stream
from interkube.deploy.render import render_server

GOAL_SECONDS = 1.0
CLUSTERS = 50
SRC = str(Path(__file__).resolve().parents[1] / "src")


def write_plan(directory: Path, clusters: int = CLUSTERS) -> Path:
    """``interkube plan --clusters N``, plus one forwarded namespace per cluster to the next."""
    env = {**os.environ, "PYTHONPATH": SRC}
    text = subprocess.run([sys.executable, "-m", "interkube", "plan", "--clusters", str(clusters)],
                          check=True, capture_output=True, text=True, env=env).stdout
    lines = []
    for line in text.splitlines():
        lines.append(line)
        if line.startswith("  dns: {service:"):
            index = sum(1 for x in lines if x.startswith("- name: cluster"))
            lines.append(f"  forward: [{{namespace: shared{index % clusters + 1}, to: cluster{index % clusters + 1}}}]")
    path = directory / "plan.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def timed(run: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        out.append(time.perf_counter() - t0)
    return out


def command(argv: list[str]) -> Callable[[], object]:
    env = {**os.environ, "PYTHONPATH": SRC}

    def run() -> object:
        return subprocess.run([sys.executable, "-m", "interkube", *argv], check=True, capture_output=True, env=env)

    return run


def pin_to_one_core() -> int:
    cpu = sorted(os.sched_getaffinity(0))[-1]
    os.sched_setaffinity(0, {cpu})  # inherited by the processes started below
    return cpu


def line(what: str, runs: list[float], goal: bool = False) -> str:
    best, median = min(runs), statistics.median(runs)
    verdict = f"   goal < {GOAL_SECONDS:g} s: {'met' if median < GOAL_SECONDS else 'short'}" if goal else ""
    return f"  {what:<32} best {best:6.3f} s   median {median:6.3f} s{verdict}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs of each figure (best and median kept)")
    parser.add_argument("--clusters", type=int, default=CLUSTERS, help="clusters in the plan (default %(default)s)")
    args = parser.parse_args(argv)

    cpu = pin_to_one_core()
    with tempfile.TemporaryDirectory(prefix="interkube-bench-render-") as tmp:
        work = Path(tmp)
        plan = write_plan(work, args.clusters)
        base = ["--plan", str(plan), "--cluster", "cluster1"]
        tls = ["--tls", "--mtls", "--issuer", "dns-ca", "--cloud", "gcp",
               *[a for i in range(2, args.clusters + 1) for a in ("--remote-dns", f"cluster{i}=10.{i}.32.53")]]
        options = parse(base)
        objects = render_server(options)
        corefile = next(o for o in objects if o["kind"] == "ConfigMap")["data"]["Corefile"]
        startup = timed(command(["--version"]), args.repeat)
        plain = timed(command(["render", *base, "-o", str(work / "out")]), args.repeat)
        with_tls = timed(command(["render", *base, *tls, "-o", str(work / "out-tls")]), args.repeat)
        in_process = timed(lambda: stream(render_server(options)), args.repeat)

    print(f"interkube render of a {args.clusters}-cluster plan for one cluster: {len(objects)} objects, "
          f"a Corefile of {corefile.count(chr(10))} lines and {corefile.count(':53 {')} server blocks; "
          f"pinned to cpu {cpu}, {args.repeat} runs each")
    print(line("command (-o DIR)", plain, goal=True))
    print(line("command --tls --mtls (+ DoT front)", with_tls, goal=True))
    print(line("in-process (render + YAML)", in_process))
    print(line("interkube --version (start alone)", startup))
    own = statistics.median(plain) - statistics.median(startup)
    print(f"  render's own share of the command: {own:.3f} s "
          f"({own / statistics.median(plain):.0%}; the rest is the interpreter's and the CLI's start)")
    return 0 if statistics.median(plain) < GOAL_SECONDS and statistics.median(with_tls) < GOAL_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
