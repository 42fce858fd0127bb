"""Benchmark: `interkube lab up` of a three-cluster lab, goal < 10 s (issue 17, Bounds).

Run ``python bench/lab_up.py`` as root from the repository root. The plan is
examples/lab/discovery.yaml: three clusters behind a transit hub, each router running
``interkube proxy`` for the other two clusters' Service ranges; the lab has 31 network
namespaces and 7 processes (three DNS servers, three proxies, the pods' TCP servers). Each
round builds the lab in process (``Lab.up``: namespaces, veths, addresses and routes, rules, data,
processes started and waited for until they answer) and brings it down again (``down``: the
processes stopped, the namespaces deleted), ``--rounds`` times; it prints each round's up and down
times, the best and median, and the machine's load (the processes the lab starts are Python
interpreters: on a busy machine their start-up dominates).

For comparison, in the same run: ``interkube --version`` (one interpreter start with the CLI's
imports), which each DNS server and proxy pays at least once.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script from a checkout: interkube from its src/ (ruff takes sys.path.insert calls
# for a bootstrap).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from interkube.lab.build import Lab
from interkube.lab.netns import missing

GOAL_SECONDS = 10.0
PLAN = Path(__file__).resolve().parents[1] / "examples" / "lab" / "discovery.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="labs built and removed (default 3)")
    parser.add_argument("--plan", default=str(PLAN), help="the plan to build (default: the three-cluster example)")
    args = parser.parse_args()
    why = missing()
    if why:
        print(f"lab_up: skipped: {why}")
        return 0
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "interkube", "--version"], check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")})
    interpreter = time.monotonic() - start
    ups, downs = [], []
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        for round_ in range(args.rounds):
            t0 = time.monotonic()
            lab = Lab.up(args.plan, Path(tmp) / f"state{round_}")
            t1 = time.monotonic()
            try:
                namespaces, processes = len(lab.namespaces), len(lab.state["pids"])
            finally:
                failed = lab.down()
            t2 = time.monotonic()
            if failed:
                print(f"lab_up: down left {failed}")
                return 1
            ups.append(t1 - t0)
            downs.append(t2 - t1)
            print(f"round {round_ + 1}: up {ups[-1]:.2f} s, down {downs[-1]:.2f} s "
                  f"({namespaces} namespaces, {processes} processes)")
    load = os.getloadavg()[0]
    best, median = min(ups), statistics.median(ups)
    verdict = "met" if best < GOAL_SECONDS else "short"
    print(f"lab up: best {best:.2f} s, median {median:.2f} s (goal < {GOAL_SECONDS:.0f} s: {verdict}); "
          f"down: median {statistics.median(downs):.2f} s; `interkube --version` {interpreter:.2f} s; "
          f"load {load:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
