"""``interkube certs``: a CA plus server and client certificates for named clusters."""

from __future__ import annotations

import argparse
from pathlib import Path

_HELP = "create a CA and DNS-over-TLS server/client certificates for clusters"
_DESCRIPTION = """\
Create (or reuse) a CA in DIR and, for each CLUSTER, a server certificate for that cluster's
DNS-over-TLS endpoint and a client certificate its peers' forwarders present for mutual TLS:

  DIR/ca.crt DIR/ca.key
  DIR/CLUSTER/server.crt DIR/CLUSTER/server.key   names: dns.CLUSTER, NS.svc.DOMAIN and
                                                  *.NS.svc.DOMAIN per --namespace, ...
  DIR/CLUSTER/client.crt DIR/CLUSTER/client.key   name: dns-client.CLUSTER

Running it again changes nothing: files that already are what was asked are kept. A file that
differs (other names, another CA, close to expiry) is an error unless --force reissues it; the CA
itself is only replaced with --new-ca. Keys are written with mode 0600.
For production, use cert-manager and trust-manager instead (docs/tls.md).
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``certs`` subcommand."""
    p = subparsers.add_parser("certs", help=_HELP, description=_DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clusters", nargs="*", metavar="CLUSTER",
                   help="cluster names (DNS labels); none: only the CA")
    p.add_argument("--dir", default="certs", metavar="DIR", help="output directory (default ./certs)")
    p.add_argument("--namespace", action="append", default=[], metavar="NS",
                   help="add NS.svc.DOMAIN and *.NS.svc.DOMAIN to the server certificates; repeatable")
    p.add_argument("--service", action="append", default=[], metavar="NAME.NAMESPACE",
                   help="add the Service's names NAME.NAMESPACE[.svc[.DOMAIN]]; repeatable")
    p.add_argument("--dns", action="append", default=[], metavar="NAME",
                   help="add another DNS name (wildcards allowed) to the server certificates; repeatable")
    p.add_argument("--ip", action="append", default=[], metavar="ADDRESS",
                   help="add an IP address to the server certificates; repeatable")
    p.add_argument("--cluster-domain", default="cluster.local", metavar="DOMAIN",
                   help="the clusters' DNS domain (default cluster.local)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--server-only", action="store_true", help="only server certificates")
    which.add_argument("--client-only", action="store_true", help="only client certificates")
    p.add_argument("--days", type=int, default=365, metavar="N", help="leaf validity (default 365)")
    p.add_argument("--ca-days", type=int, default=3650, metavar="N", help="CA validity (default 3650)")
    p.add_argument("--ca-name", default="interkube DNS CA", metavar="NAME", help="the CA's common name")
    p.add_argument("--key-type", choices=("ec", "rsa"), default="ec",
                   help="ECDSA P-256 (default) or RSA 2048 keys")
    p.add_argument("--force", action="store_true",
                   help="reissue leaf certificates that exist but differ from what is asked")
    p.add_argument("--new-ca", action="store_true",
                   help="replace the CA (every certificate it signed must then be reissued)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interkube.tlsutil import certs

    if args.days <= 0 or args.ca_days <= 0:
        raise certs.CertificateError("--days and --ca-days must be positive")
    layout = certs.Layout(Path(args.dir))
    report = certs.Report()
    # Validate every name before writing anything, so a typo leaves no half-made directory.
    wanted = [certs.cluster_names(c, namespaces=args.namespace, services=args.service,
                                  extra_dns=args.dns, ip_addresses=args.ip,
                                  cluster_domain=args.cluster_domain) for c in args.clusters]
    ca = certs.ensure_ca(layout, common_name=args.ca_name, days=args.ca_days, key_type=args.key_type,
                         new=args.new_ca, report=report)
    try:
        for names in wanted:
            certs.ensure_cluster(layout, ca, names, server=not args.client_only,
                                 client=not args.server_only, days=args.days,
                                 key_type=args.key_type, force=args.force or args.new_ca,
                                 report=report)
    finally:
        if report.lines:
            print(report.text())
    for names in wanted:
        if not args.client_only:
            print(f"{names.cluster}: forwarders verify the name {names.server_name} "
                  f"(tls://IP%{names.server_name})")
    return 0
