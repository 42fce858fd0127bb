"""Benchmark: ``interkube check`` on 200 clusters x 6 ranges + 100 external networks, goal < 1 s.

Run ``python -m bench.netplan_check`` (or ``python bench/netplan_check.py``) from the repository
root. The process is pinned to one core. The plan is dual-stack (node, pod and Service ranges in
IPv4 and IPv6 per cluster), every cluster shares the same Service range (as clusters commonly
do, which makes the sweep report 2 x 19,900 VIP pairs), two external networks sit inside that
Service range (400 black holes to report), and clusters forward namespaces to each other.

The figure measured is the whole check as the command runs it: parsing the YAML text, the rules
and the terminal report. Next to it, in the same run, an all-pairs overlap scan of the same
ranges (what the sweep replaces) for a ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

# Run as a script from a checkout: testkit from the repository, interkube from its src/ (inserted
# src/ first, so the repository comes before it; ruff takes sys.path.insert calls for a bootstrap).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interkube.netplan.parse import parse_plan
from interkube.netplan.report import render_text
from interkube.netplan.rules import Severity, check

GOAL_SECONDS = 1.0
CLUSTERS = 200
EXTERNAL = 100


def plan_text(clusters: int = CLUSTERS, external: int = EXTERNAL) -> str:
    """The benchmark plan as YAML, as a user would hand it to ``interkube check``."""
    lines = ["version: 1", "clusters:"]
    for i in range(clusters):
        forward = f"\n    forward: [{{namespace: shared-{(i + 1) % clusters}, to: c{(i + 1) % clusters}}}]" \
            if i % 10 == 0 else ""
        lines.append(
            f"  - name: c{i}\n"
            f"    nodes: [10.{i}.0.0/20, 'fd00:{i:x}::/64']\n"
            f"    pods: [10.{i}.64.0/18, 'fd00:{i:x}:0:100::/56']\n"
            f"    per_node_prefix: {{ipv4: 24, ipv6: 64}}\n"
            f"    services: [172.20.0.0/16, 'fd00:ffff::/112']\n"
            f"    dns: {{service: 172.20.0.10, endpoints: [10.{i}.64.3, 10.{i}.65.3]}}\n"
            f"    namespaces: [default, kube-system, app-{i}, shared-{i}]{forward}"
        )
    lines.append("external:")
    for j in range(external):
        cidr = f"172.20.{j}.0/24" if j < 2 else f"192.168.{j}.0/24"
        lines.append(f"  - {{name: net{j}, kind: onprem, cidrs: ['{cidr}']}}")
    lines.append("links:")
    lines.append("  - {name: transit, kind: hub, between: [" + ", ".join(f"c{i}" for i in range(clusters))
                 + "], pod_traffic: true}")
    lines += [f"  - {{kind: vpn, between: [c{j % clusters}, net{j}]}}" for j in range(external)]
    return "\n".join(lines) + "\n"


def run_check(text: str) -> tuple[float, float, float, int]:
    """Seconds for parse, rules and report, and the number of findings."""
    t0 = time.perf_counter()
    plan = parse_plan(text, file="bench.yaml")
    t1 = time.perf_counter()
    report = check(plan)
    t2 = time.perf_counter()
    render_text(report)
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, len(report.findings)


def all_pairs_overlaps(text: str) -> tuple[float, int]:
    """The reference the sweep replaces: every range against every other."""
    plan = parse_plan(text)
    networks = [r.network for c in plan.clusters for r in (*c.nodes, *c.pods, *c.services)]
    networks += [r.network for e in plan.external for r in e.cidrs]
    t0 = time.perf_counter()
    count = sum(1 for i, a in enumerate(networks) for b in networks[i + 1:]
                if a.version == b.version and a.overlaps(b))
    return time.perf_counter() - t0, count


def pin_to_one_core() -> int:
    cpus = sorted(os.sched_getaffinity(0))
    cpu = cpus[-1]
    os.sched_setaffinity(0, {cpu})
    return cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs to take the best and median of")
    parser.add_argument("--no-reference", action="store_true", help="skip the all-pairs reference")
    args = parser.parse_args(argv)

    cpu = pin_to_one_core()
    text = plan_text()
    runs = [run_check(text) for _ in range(args.repeat)]
    totals = [sum(run[:3]) for run in runs]
    best = min(range(len(runs)), key=lambda i: totals[i])
    parse_s, rules_s, report_s, findings = runs[best]
    plan = parse_plan(text)
    ranges = sum(len(c.nodes) + len(c.pods) + len(c.services) for c in plan.clusters) + \
        sum(len(e.cidrs) for e in plan.external)
    errors = check(plan).count(Severity.ERROR)

    print(f"interkube check: {CLUSTERS} clusters x 6 ranges + {EXTERNAL} external networks "
          f"({ranges} ranges, {findings} findings of which {errors} errors); pinned to cpu {cpu}, "
          f"best of {args.repeat}")
    print(f"  parse   {parse_s:8.3f} s")
    print(f"  rules   {rules_s:8.3f} s")
    print(f"  report  {report_s:8.3f} s")
    total = totals[best]
    verdict = "met" if total < GOAL_SECONDS else "short"
    print(f"  total   {total:8.3f} s   (median {statistics.median(totals):.3f} s)   "
          f"goal < {GOAL_SECONDS:g} s: {verdict}")
    if not args.no_reference:
        reference_s, pairs = all_pairs_overlaps(text)
        print(f"  reference: an all-pairs overlap scan of the same ranges alone takes {reference_s:.3f} s "
              f"({pairs} overlapping pairs), {reference_s / total:.1f}x the whole check")
    return 0 if verdict == "met" else 1


if __name__ == "__main__":
    sys.exit(main())
