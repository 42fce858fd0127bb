"""`interkube lab up|down|status|exec`: the command line of :class:`interkube.lab.build.Lab`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "lab", help="build the scenarios' clusters in network namespaces (root)",
        description="Build connected 'clusters' from an address plan in network namespaces: routers, "
                    "nodes, pods, an interkube DNS server per cluster. See docs/lab.md.")
    p.add_argument("--state", default=None, metavar="DIR",
                   help="where the lab keeps its state, data and logs (default ./.interkube-lab)")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    up = verbs.add_parser("up", help="build the lab of a plan file")
    up.add_argument("plan", metavar="SPEC", help="an address plan (the format of `interkube check`)")
    up.add_argument("--dot", action="store_true",
                    help="forward namespaces between clusters over DNS over TLS with mutual TLS")
    up.add_argument("--nodes", type=int, choices=(1, 2), default=2, help="nodes per cluster (default 2)")
    up.add_argument("--state", dest="verb_state", default=None, metavar="DIR", help=argparse.SUPPRESS)
    up.set_defaults(func=_up)
    down = verbs.add_parser("down", help="stop the lab's processes and delete its namespaces")
    down.add_argument("--state", dest="verb_state", default=None, metavar="DIR", help=argparse.SUPPRESS)
    down.set_defaults(func=_down)
    status = verbs.add_parser("status", help="clusters, pods, addresses, links and processes")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--svg", metavar="FILE", help="also draw the lab as an SVG picture")
    status.add_argument("--state", dest="verb_state", default=None, metavar="DIR", help=argparse.SUPPRESS)
    status.set_defaults(func=_status)
    ex = verbs.add_parser("exec", help="run a command in a pod's network namespace")
    ex.add_argument("cluster", metavar="CLUSTER", help="a cluster (or an external network)")
    ex.add_argument("pod", metavar="POD", help="a pod, router, node0, node1 (host for an external network)")
    ex.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD", help="the command")
    ex.add_argument("--state", dest="verb_state", default=None, metavar="DIR", help=argparse.SUPPRESS)
    ex.set_defaults(func=_exec)

    def usage(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=usage)


def _state(args: argparse.Namespace) -> str:
    from interkube.lab.build import DEFAULT_STATE

    return str(getattr(args, "verb_state", None) or args.state or DEFAULT_STATE)


def _up(args: argparse.Namespace) -> int:
    from interkube.lab.build import Lab

    lab = Lab.up(args.plan, _state(args), dot=args.dot, nodes=args.nodes)
    status = lab.status()
    processes = len(status["processes"])
    print(f"lab {lab.lab_id} up in {lab.state['up_seconds']:.2f} s: {len(lab.namespaces)} namespaces, "
          f"{processes} processes; state in {lab.state_dir}")
    print(_text(status))
    return 0


def _down(args: argparse.Namespace) -> int:
    from interkube.errors import LabError
    from interkube.lab.build import Lab

    lab = Lab.load(_state(args))
    failed = lab.down()
    if failed:
        raise LabError("could not delete: " + "; ".join(failed))
    print(f"lab {lab.lab_id} down: {len(lab.namespaces)} namespaces deleted")
    return 0


def _status(args: argparse.Namespace) -> int:
    import json

    from interkube.lab.build import Lab

    lab = Lab.load(_state(args))
    status = lab.status()
    if args.svg:
        from interkube.lab.svg import render_svg

        with open(args.svg, "w", encoding="utf-8") as f:
            f.write(render_svg(status))
    print(json.dumps(status, indent=2) if args.json else _text(status))
    running = all(p["running"] for p in status["processes"].values())
    return 0 if running and status["namespaces"]["present"] == status["namespaces"]["expected"] else 1


def _exec(args: argparse.Namespace) -> int:
    import os

    from interkube.errors import LabError
    from interkube.lab.build import Lab

    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise LabError("exec needs a command after --")
    lab = Lab.load(_state(args))
    ns = lab.netns(args.cluster, args.pod)
    os.execvp("ip", ["ip", "netns", "exec", ns, *argv])


def _text(status: dict[str, object]) -> str:
    lines: list[str] = []
    clusters = status["clusters"]
    assert isinstance(clusters, dict)
    for name, c in clusters.items():
        dns = c["dns"]
        forward = ", ".join(f"{ns} -> {to}" for ns, to in c["forward"].items())
        lines.append(f"cluster {name} ({c['networking']}): router {' '.join(c['router_addresses'])}, "
                     f"DNS {' '.join(dns['addresses'])} (Service {' '.join(dns['service'])})"
                     + (f", forwards {forward}" if forward else "")
                     + (f", proxies the VIPs of {', '.join(c['proxy']['clusters'])}" if c.get("proxy") else ""))
        for pod, p in c["pods"].items():
            port = f" :{p['port']}" if p["port"] else ""
            public = f"  public {c['public'][pod]}" if pod in c.get("public", {}) else ""
            lines.append(f"  {pod:<14} {p['namespace']:<12} node{p['node']}  {' '.join(p['addresses'])}{port}{public}")
    external = status["external"]
    assert isinstance(external, dict)
    for name, e in external.items():
        lines.append(f"external {name}: {' '.join(e['addresses'])}")
    links = status["links"]
    assert isinstance(links, list)
    for link in links:
        lines.append(f"link {link['link']}: {' - '.join(link['between'])}")
    processes = status["processes"]
    assert isinstance(processes, dict)
    for label, p in processes.items():
        lines.append(f"process {label}: pid {p['pid']} {'running' if p['running'] else 'NOT RUNNING'}")
    return "\n".join(lines)
