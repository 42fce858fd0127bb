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

Each figure is given as wall-clock time (best and median; the goal is judged on the best) and as
the CPU time the run used (median), which a machine busy with other work inflates far less.

Beside them, in the same run, ``interkube --version`` (the interpreter and the CLI's start, which
every command pays) so that what is render's own shows.
"""

from __future__ import annotations

import argparse
import os
import resource
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


def timed(run: Callable[[], object], repeat: int) -> tuple[list[float], list[float]]:
    """Wall-clock seconds and CPU seconds (user + system, of this process and the ones it
    waited for) of each run. CPU time is what the run itself used: on a machine shared with other
    work it stays close to the quiet-machine wall time while the wall time grows with the wait."""
    wall, cpu = [], []
    for _ in range(repeat):
        c0 = _cpu()
        t0 = time.perf_counter()
        run()
        wall.append(time.perf_counter() - t0)
        cpu.append(_cpu() - c0)
    return wall, cpu


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def command(argv: list[str]) -> Callable[[], object]:
    env = {**os.environ, "PYTHONPATH": SRC}

    def run() -> object:
        return subprocess.run([sys.executable, "-m", "interkube", *argv], check=True, capture_output=True, env=env)

    return run


def pin_to_one_core() -> int:
    cpu = sorted(os.sched_getaffinity(0))[-1]
    os.sched_setaffinity(0, {cpu})  # inherited by the processes started below
    return cpu


def line(what: str, runs: tuple[list[float], list[float]], goal: bool = False) -> str:
    wall, cpu = runs
    verdict = f"   goal < {GOAL_SECONDS:g} s: {'met' if min(wall) < GOAL_SECONDS else 'short'}" if goal else ""
    return (f"  {what:<36} wall best {min(wall):6.3f} s  median {statistics.median(wall):6.3f} s   "
            f"cpu median {statistics.median(cpu):6.3f} s{verdict}")


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
    own = statistics.median(plain[1]) - statistics.median(startup[1])
    print(f"  render's own share of the command (cpu): {own:.3f} s "
          f"({own / statistics.median(plain[1]):.0%}; the rest is the interpreter's and the CLI's start)")
    print(f"  load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus"
          + ("  (a busy machine: wall times wait for the cpu; the cpu column is the work itself)"
             if os.getloadavg()[0] > 1.5 else ""))
    return 0 if min(plain[0]) < GOAL_SECONDS and min(with_tls[0]) < GOAL_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
