"""``interkube check`` and ``interkube plan``: the command line of the address-plan tools."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from interkube.errors import InterkubeError, PlanError

_CHECK_HELP = "check an address plan, or live clusters, against the rules R1-R10"
_PLAN_HELP = "allocate non-overlapping address ranges for N clusters and write a plan"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``check`` and ``plan`` subcommands."""
    check = subparsers.add_parser(
        "check", help=_CHECK_HELP, description=_CHECK_HELP + ". Exit status 1 when there are errors.")
    check.add_argument("plan", nargs="?", metavar="PLAN", help="plan file (YAML or JSON)")
    check.add_argument("--kubeconfig", metavar="FILE",
                       help="read the plan from live clusters through this kubeconfig "
                            "(default $KUBECONFIG or ~/.kube/config when --context is given)")
    check.add_argument("--context", action="append", default=[], metavar="NAME",
                       help="a kubeconfig context to discover; repeat for each cluster")
    check.add_argument("--write-plan", metavar="FILE", help="save the discovered plan for editing")
    check.add_argument("--json", action="store_true", help="print findings as JSON")
    check.add_argument("--svg", metavar="FILE", help="draw the ranges and conflicts into an SVG file")
    check.set_defaults(func=lambda args: run_check(args, check))

    plan = subparsers.add_parser("plan", help=_PLAN_HELP, description=_PLAN_HELP + ", which check passes.")
    plan.add_argument("--clusters", type=int, required=True, metavar="N", help="number of clusters")
    plan.add_argument("--supernet", default="10.0.0.0/8", metavar="CIDR",
                      help="IPv4 block to allocate from (default 10.0.0.0/8)")
    plan.add_argument("--nodes", type=int, default=100, metavar="N", help="nodes per cluster (default 100)")
    plan.add_argument("--pods-per-node", type=int, default=110, metavar="N", help="pods per node (default 110)")
    plan.add_argument("--services", type=int, default=4096, metavar="N", help="Services per cluster (default 4096)")
    plan.add_argument("--ipv6", metavar="ula|PREFIX",
                      help="add IPv6: a ULA /48 derived from --seed, or a prefix of your own")
    plan.add_argument("--ipv6-from-ipv4", action="store_true",
                      help="derive each IPv6 range from its IPv4 range instead of allocating it")
    plan.add_argument("--seed", default="interkube", help="text the ULA prefix is derived from")
    plan.add_argument("--topology", choices=("mesh", "hub"), default="hub",
                      help="links between the clusters (default hub)")
    plan.add_argument("--name-prefix", default="cluster", help="clusters are named PREFIX1, PREFIX2, ...")
    plan.add_argument("-o", "--output", metavar="FILE", help="write the plan here instead of stdout")
    plan.add_argument("--json", action="store_true", help="write JSON instead of YAML")
    plan.set_defaults(func=run_plan)


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InterkubeError(f"cannot write {path}: {exc.strerror or exc}") from exc


def run_check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from interkube.netplan import dump, report, rules, svg

    discovering = bool(args.context or args.kubeconfig)
    if args.plan and discovering:
        parser.error("give either a PLAN file or --kubeconfig/--context, not both")
    if not args.plan and not args.context:
        parser.error("give a PLAN file, or --context (with --kubeconfig) to discover live clusters")
    if args.write_plan and not discovering:
        parser.error("--write-plan goes with --context")

    if discovering:
        import asyncio

        from interkube.netplan.discover import discover

        kubeconfig = args.kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or \
            str(Path.home() / ".kube" / "config")
        plan = asyncio.run(discover(kubeconfig, args.context))
        if args.write_plan:
            header = (f"discovered by interkube check --kubeconfig {kubeconfig} "
                      + " ".join(f"--context {c}" for c in args.context)
                      + "\nnetworking (routed/overlay) and links cannot be discovered: check and add them")
            _write(args.write_plan, dump.dump_plan(plan, header=header))
    else:
        from interkube.netplan.parse import load_plan

        plan = load_plan(args.plan)

    result = rules.check(plan)
    if args.json:
        print(report.render_json(result), end="")
    else:
        width = max(60, shutil.get_terminal_size((100, 24)).columns)
        print(report.render_text(result, width=width), end="")
    if args.svg:
        _write(args.svg, svg.render_svg(result))
    return 0 if result.ok else 1


def run_plan(args: argparse.Namespace) -> int:
    import ipaddress

    from interkube.netplan.allocate import Sizing, allocate
    from interkube.netplan.dump import dump_plan
    from interkube.netplan.rules import Severity, check

    try:
        supernet = ipaddress.ip_network(args.supernet, strict=True)
    except ValueError as exc:
        raise PlanError(f"--supernet: {exc}") from None
    if not isinstance(supernet, ipaddress.IPv4Network):
        raise PlanError("--supernet takes an IPv4 block; use --ipv6 for IPv6")
    sizing = Sizing(clusters=args.clusters, supernet=supernet, nodes=args.nodes,
                    pods_per_node=args.pods_per_node, services=args.services, ipv6=args.ipv6,
                    ipv6_from_ipv4=args.ipv6_from_ipv4, topology=args.topology, seed=args.seed,
                    name_prefix=args.name_prefix)
    if args.ipv6_from_ipv4 and not args.ipv6:
        raise PlanError("--ipv6-from-ipv4 needs --ipv6 ula|PREFIX")
    plan = allocate(sizing)
    verdict = check(plan)
    if not verdict.ok:
        # The allocator promises plans that pass; refuse to hand out one that does not.
        first = next(f for f in verdict.findings if f.severity is Severity.ERROR)
        raise InterkubeError(f"the allocated plan fails {first.rule}: {first.message}")
    cluster = plan.clusters[0]
    per_node = cluster.per_node_prefix
    header = (
        f"interkube plan --clusters {sizing.clusters} --supernet {supernet} --nodes {sizing.nodes} "
        f"--pods-per-node {sizing.pods_per_node} --services {sizing.services}"
        + (f" --ipv6 {sizing.ipv6}" if sizing.ipv6 else "")
        + (" --ipv6-from-ipv4" if sizing.ipv6_from_ipv4 else "")
        + f" --topology {sizing.topology}\n"
        f"each count has 2x headroom; per cluster: pods /{cluster.pods[0].network.prefixlen} "
        f"(a /{per_node.ipv4} per node{f', IPv6 a /{per_node.ipv6}' if per_node.ipv6 else ''}), "
        f"nodes /{cluster.nodes[0].network.prefixlen}, Services /{cluster.services[0].network.prefixlen}"
    )
    text = dump_plan(plan, header=header, as_json=args.json or str(args.output or "").endswith(".json"))
    if args.output:
        _write(args.output, text)
    else:
        print(text, end="")
    return 0
