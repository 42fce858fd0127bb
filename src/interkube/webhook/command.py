"""``interkube webhook``: serve the mutating admission webhook that injects interkube's DNS into Pods."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from interkube.webhook.mutate import Policy
    from interkube.webhook.server import Address

_HELP = "serve the admission webhook that points Pods at interkube's DNS"
_DESCRIPTION = """\
Serve a mutating admission webhook (HTTPS, admission.k8s.io/v1) that sets dnsPolicy: None and a
dnsConfig on Pods at CREATE: nameservers (interkube's Service IPs), the search list
NS.svc.DOMAIN svc.DOMAIN DOMAIN plus --search domains, ndots and --option options. The Pod's own
dnsConfig is merged in as the kubelet merges it under ClusterFirst.

Which Pods reach it is the MutatingWebhookConfiguration's choice (`interkube render webhook`
writes one: namespaces labelled interkube.io/dns-injection=enabled, and/or Pods so labelled or
annotated). Never changed: kube-system, --namespace and --exclude-namespace namespaces,
interkube's own Pods (app.kubernetes.io/name=interkube), Pods labelled or annotated
interkube.io/dns-injection=disabled, Pods with dnsPolicy None or Default, and hostNetwork Pods
(with --host-network: those with dnsPolicy ClusterFirstWithHostNet are changed).

The certificate files are re-read when they change (cert-manager renewals).
"""

DEFAULT_CERT = "/etc/interkube/webhook/tls.crt"
DEFAULT_KEY = "/etc/interkube/webhook/tls.key"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``webhook`` subcommand."""
    p = subparsers.add_parser("webhook", help=_HELP, description=_DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_pod_arguments(p)
    p.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", ""), metavar="NS",
                   help="the webhook's own namespace, never changed (default $POD_NAMESPACE)")
    p.add_argument("--listen", default=":8443", metavar="[HOST]:PORT",
                   help="HTTPS address the API server calls (POST /mutate); default :8443")
    p.add_argument("--http-listen", default=":8080", metavar="[HOST]:PORT|off",
                   help="plain HTTP address of /health, /ready and /metrics (default :8080; off: none)")
    p.add_argument("--tls-cert", default=DEFAULT_CERT, metavar="FILE",
                   help=f"serving certificate (default {DEFAULT_CERT})")
    p.add_argument("--tls-key", default=DEFAULT_KEY, metavar="FILE", help=f"its private key (default {DEFAULT_KEY})")
    p.add_argument("--lameduck", default="5s", metavar="DURATION",
                   help="on SIGTERM, answer this long while reporting not ready (default 5s)")
    p.add_argument("--quiet", action="store_true", help="log only warnings (not a line per Pod)")
    p.set_defaults(func=run)


def add_pod_arguments(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """What Pods get and which are never changed: the flags ``interkube webhook`` and
    ``interkube render webhook`` share (the rendered Deployment passes them on)."""
    p.add_argument("--nameserver", action="append", default=[], metavar="IP", required=True,
                   help="interkube's DNS Service IP given to Pods; repeatable, at most 3")
    p.add_argument("--cluster-domain", default="cluster.local", metavar="DOMAIN",
                   help="the cluster's DNS domain (default cluster.local)")
    p.add_argument("--search", action="append", default=[], metavar="DOMAIN",
                   help="a search domain after the cluster's three (e.g. cluster.all); repeatable")
    p.add_argument("--ndots", type=int, default=5, metavar="N", help="the ndots option (default 5, as Kubernetes)")
    p.add_argument("--option", action="append", default=[], metavar="NAME[:VALUE]",
                   help="another resolv.conf option (timeout:2, attempts:3, edns0, ...); repeatable")
    p.add_argument("--exclude-namespace", action="append", default=[], metavar="NS",
                   help="another namespace never changed (kube-system and the webhook's own never are); "
                        "repeatable")
    p.add_argument("--host-network", action="store_true",
                   help="also change hostNetwork Pods that use dnsPolicy ClusterFirstWithHostNet")


def policy_from_args(args: argparse.Namespace, own_namespace: str | None) -> Policy:
    """The validated policy the flags of :func:`add_pod_arguments` describe."""
    from interkube.webhook import mutate

    settings = mutate.dns_settings(args.nameserver, cluster_domain=args.cluster_domain, searches=args.search,
                                   ndots=args.ndots, options=args.option)
    return mutate.policy(settings, own_namespace=own_namespace, exclude=args.exclude_namespace,
                         host_network=args.host_network)


def run(args: argparse.Namespace) -> int:
    from interkube.errors import WebhookError
    from interkube.server.main import _run_loop, configure_logging
    from interkube.tlsutil.contexts import ServerFiles, ServerTls, TlsSetupError
    from interkube.webhook.server import ALPN, Webhook, serve_until_signalled

    policy = policy_from_args(args, args.namespace or None)
    listen = address(args.listen, "--listen")
    http_listen = None if args.http_listen == "off" else address(args.http_listen, "--http-listen")
    lameduck = _duration(args.lameduck, "--lameduck")
    configure_logging(args.quiet)
    try:
        tls = ServerTls(ServerFiles(args.tls_cert, args.tls_key), "nocert", label="webhook",
                        alpn=ALPN)
    except TlsSetupError as exc:
        raise WebhookError(str(exc)) from None
    webhook = Webhook(policy, tls, listen, http_listen=http_listen, lameduck=lameduck, quiet=args.quiet)
    return _run_loop(serve_until_signalled(webhook), "auto")  # uvloop when installed, as serve


def address(text: str, flag: str) -> Address:
    from interkube.errors import WebhookError
    from interkube.plugin.http import parse_http_address
    from interkube.webhook.server import Address

    try:
        host, port = parse_http_address(text, 0)
    except ValueError as exc:
        raise WebhookError(f"{flag}: {exc}") from None
    if ":" not in text:
        raise WebhookError(f"{flag}: {text!r} has no port ([HOST]:PORT)")
    return Address(host, port)


def _duration(text: str, flag: str) -> float:
    from interkube.corefile.lexer import Token
    from interkube.errors import ConfigError, WebhookError
    from interkube.pkg.args import duration

    try:
        return duration(Token(text, "", 0))
    except ConfigError as exc:
        raise WebhookError(f"{flag}: {exc.message}") from None
