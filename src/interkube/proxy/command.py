"""``interkube proxy``: load-balance other clusters' Service VIPs to their pods with nftables."""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys

_HELP = "load-balance remote clusters' Service VIPs to their pods (nftables)"
_DESCRIPTION = """\
interkube proxy -conf FILE       run in this network namespace: keep the nftables tables
                                 `ip interkube` and `ip6 interkube` equal to the Services and
                                 ready endpoints of the clusters FILE names (SIGTERM removes them)
interkube proxy status [--json]  the Service ports programmed in this namespace's tables
interkube proxy routes -conf FILE [--via ADDR]
                                 the routes other hosts need to send the VIPs here

FILE (Corefile syntax):
  proxy {
      cluster NAME {
          kubeconfig PATH [CONTEXT]   # or: snapshot FILE...
          service_cidr CIDR...        # the Service ranges the cluster owns
          wins                        # this cluster takes addresses it shares with another
      }
      local CIDR...                   # this host's own Service ranges (never proxied)
      masquerade                      # SNAT proxied connections (symmetric return paths)
      mark VALUE                      # marks proxied packets and connections (default 0x40000)
      hooks prerouting output         # where traffic is proxied (default both)
      announce DEVICE                 # add the Service ranges to a dummy interface
      http ADDR:PORT                  # /metrics, /ready, /ready/CLUSTER, /status
  }
See docs/proxy.md.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("proxy", help=_HELP, description=_DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-conf", "--conf", dest="conf", metavar="FILE", help="the proxy's configuration file")
    p.add_argument("--quiet", action="store_true", help="log only warnings and errors")
    sub = p.add_subparsers(dest="proxy_command", metavar="{status,routes}")
    s = sub.add_parser("status", help="list the programmed Service ports and endpoints")
    s.add_argument("--json", action="store_true", help="JSON instead of text")
    s.set_defaults(func=status)
    r = sub.add_parser("routes", help="print the routes other hosts need toward this proxy")
    r.add_argument("-conf", "--conf", dest="routes_conf", metavar="FILE", required=True)
    r.add_argument("--via", action="append", default=[], metavar="ADDR",
                   help="this proxy's address as other hosts reach it (one per family; default: the first "
                        "global address of this network namespace)")
    r.set_defaults(func=routes)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interkube.errors import ConfigError
    from interkube.proxy import config as proxy_config
    from interkube.proxy import runtime
    from interkube.server.main import configure_logging

    if not args.conf:
        raise ConfigError("-conf FILE is required (see interkube proxy --help)")
    config = proxy_config.load(args.conf)
    configure_logging(args.quiet)
    import asyncio

    return asyncio.run(runtime.run(config))


def status(args: argparse.Namespace) -> int:
    from interkube.proxy import nft

    binary = nft.nft_binary()
    tables = nft.read_all(binary)
    if all(t is None for t in tables.values()):
        print("no interkube tables in this network namespace (is interkube proxy running here?)", file=sys.stderr)
        return 1
    entries = [p for t in tables.values() if t for p in t]
    if args.json:
        print(json.dumps({"tables": [f for f, t in tables.items() if t is not None],
                          "services": [p.to_dict() for p in entries]}, indent=1))
        return 0
    for p in entries:
        vip = f"[{p.vip}]" if ":" in p.vip else p.vip
        target = " ".join(p.endpoints) if p.endpoints else "reject (no ready endpoints)"
        print(f"{p.family:<4}{vip}:{p.port}/{p.protocol}  {p.service}  -> {target}"
              + ("  (ClientIP affinity)" if p.affinity else ""))
    return 0


def routes(args: argparse.Namespace) -> int:
    from interkube.errors import ConfigError
    from interkube.proxy import config as proxy_config

    config = proxy_config.load(args.routes_conf)
    via: dict[int, str] = {}
    for text in args.via:
        try:
            via[ipaddress.ip_address(text).version] = text
        except ValueError:
            raise ConfigError(f"--via {text!r} is not an IP address") from None
    for cluster in config.clusters:
        if not cluster.service_cidrs:
            print(f"# cluster {cluster.name}: no service_cidr in {config.file}, so no route to print")
            continue
        for network in cluster.service_cidrs:
            gateway = via.get(network.version) or _own_address(network.version)
            if gateway is None:
                raise ConfigError(f"no IPv{network.version} address of this host to route {network} to; "
                                  "give one with --via")
            print(f"ip {'-6 ' if network.version == 6 else ''}route replace {network} via {gateway}"
                  f"  # cluster {cluster.name}")
    return 0


def _own_address(version: int) -> str | None:
    import subprocess

    proc = subprocess.run(["ip", "-json", "-" + str(version), "addr", "show", "scope", "global"],
                          capture_output=True, text=True, check=False)
    for link in json.loads(proc.stdout or "[]"):
        if "LOOPBACK" in link.get("flags", []) or link.get("link_type") == "dummy":
            continue
        for info in link.get("addr_info", []):
            if info.get("local"):
                return str(info["local"])
    return None
