"""``interkube doctor``: check a real setup, each check printing ok / warn / fail with evidence and a fix."""

from __future__ import annotations

import argparse
from collections.abc import Callable

_HELP = "check a setup: the plan, the Corefile and its upstreams, the clusters, a probe from a pod"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``doctor`` subcommand."""
    p = subparsers.add_parser(
        "doctor", help=_HELP,
        description=_HELP + ". Exit status 1 when any check fails, 0 otherwise (warnings included).")
    p.add_argument("-conf", "--conf", dest="conf", metavar="FILE", help="the Corefile interkube serves")
    p.add_argument("-dns.port", "--dns-port", dest="dns_port", type=int, metavar="PORT",
                   help="default port for server keys without one, as `interkube serve -dns.port` (default 53)")
    p.add_argument("--plan", metavar="PLAN", help="the address plan (as for `interkube check`)")
    p.add_argument("--kubeconfig", metavar="FILE",
                   help="kubeconfig of the clusters (default $KUBECONFIG or ~/.kube/config with --context); "
                        "alone: its current context")
    p.add_argument("--context", action="append", default=[], metavar="CONTEXT[=CLUSTER]",
                   help="a kubeconfig context to check, and the plan cluster it is (default: the plan cluster "
                        "whose context or name it is); repeat for each cluster")
    p.add_argument("--dns-service", default=None, metavar="NAMESPACE/NAME",
                   help="the cluster DNS Service (default kube-system/kube-dns, else kube-system/coredns)")
    p.add_argument("--webhook", metavar="NAME", default=None,
                   help="the MutatingWebhookConfiguration to check (default: those labelled "
                        "app.kubernetes.io/name=interkube)")
    p.add_argument("--ready", action="append", default=[], metavar="URL",
                   help="interkube's /ready URL (default: the Corefile's ready address on 127.0.0.1); repeat "
                        "for each cluster's server")
    p.add_argument("--proxy", metavar="URL", default=None,
                   help="`interkube proxy`'s HTTP endpoint (http://ADDR:PORT)")
    p.add_argument("--proxy-netns", metavar="NETNS", default=None,
                   help="the network namespace the proxy runs in: its tables are read and --proxy asked there "
                        "(default: the --probe namespace, else this one)")
    p.add_argument("--probe", metavar="NETNS", default=None,
                   help="run the scenario's checks from inside this network namespace")
    p.add_argument("--probe-pod", metavar="CLUSTER/POD", default=None,
                   help="run the probe from a pod of `interkube lab` (its namespace, cluster, DNS and plan)")
    p.add_argument("--lab-state", metavar="DIR", default=None, help="the lab's state folder (as `interkube lab`)")
    p.add_argument("--probe-cluster", metavar="NAME", default=None,
                   help="the plan cluster the probe namespace belongs to (default: the first that forwards)")
    p.add_argument("--probe-dns", metavar="ADDRESS[:PORT]", default=None, type=_address(False),
                   help="the DNS server the probe asks (default: its cluster's DNS Service, else endpoint)")
    p.add_argument("--probe-srv", action="append", default=[], metavar="NAME",
                   help="an SRV name the probe resolves and connects to every target of, as the forwarded-DNS "
                        "scenario does (_couchbase._tcp.cb-example-srv.remote.svc.cluster.local); repeatable")
    p.add_argument("--probe-connect", action="append", default=[], metavar="ADDRESS:PORT", type=_address(True),
                   help="an address the probe connects to over TCP, besides the plan's; repeatable")
    p.add_argument("--timeout", type=_seconds, default=2.0, metavar="SECONDS",
                   help="how long one network check waits (default 2)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.set_defaults(func=lambda args: run(args, p))


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a time above zero")
    return value


def _address(port_needed: bool) -> Callable[[str], str]:
    """An argparse type: ``ADDRESS[:PORT]`` / ``[IPv6]:PORT`` checked, kept as written."""

    def check(text: str) -> str:
        import ipaddress

        from interkube.doctor.probe import split_address

        try:
            host, port = split_address(text, 0)
            ipaddress.ip_address(host)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not ADDRESS[:PORT] (an IP address)") from None
        if not 0 <= port <= 65535 or (port_needed and port == 0):
            raise argparse.ArgumentTypeError(f"{text!r}: give a port from 1 to 65535")
        return text

    return check


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import asyncio
    import shutil

    from interkube.doctor import findings
    from interkube.doctor.checks import Options, run_checks

    if not any((args.conf, args.plan, args.context, args.kubeconfig, args.probe, args.probe_pod, args.ready,
                args.proxy, args.proxy_netns)):
        parser.error("give something to check: -conf, --plan, --kubeconfig/--context, --probe(-pod), --ready "
                     "or --proxy")
    options = Options(corefile=args.conf, dns_port=args.dns_port, plan=args.plan, kubeconfig=args.kubeconfig,
                      contexts=tuple(args.context), dns_service=args.dns_service, webhook=args.webhook,
                      ready=tuple(args.ready), proxy=args.proxy, proxy_netns=args.proxy_netns, probe=args.probe,
                      probe_pod=args.probe_pod, lab_state=args.lab_state,
                      probe_cluster=args.probe_cluster, probe_dns=args.probe_dns,
                      probe_srv=tuple(args.probe_srv),
                      probe_connect=tuple(args.probe_connect), timeout=args.timeout)
    found = asyncio.run(run_checks(options))
    if args.json:
        print(findings.render_json(found), end="")
    else:
        width = max(60, shutil.get_terminal_size((100, 24)).columns - 8)
        print(findings.render_text(found, width=width), end="")
    return 1 if findings.worst(found) is findings.Level.FAIL else 0
