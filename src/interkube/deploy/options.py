"""The options of ``interkube render``: one dataclass, filled from the command line or by hand.

Python callers (the container-image test, tools) build :class:`RenderOptions` directly, or from
an argument list with :func:`parse` (the same parser as the command line, so defaults agree).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from interkube import __version__
from interkube.errors import RenderError

#: Where the image is published; the tag is this interkube's version.
IMAGE_REPOSITORY = "ghcr.io/interkube/interkube"
DEFAULT_IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"

CLOUDS = ("aws", "gcp", "azure")
EXPOSE = ("cluster-ip", "internal-lb")
ANTI_AFFINITY = ("required", "preferred")

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")


@dataclass(frozen=True)
class Mount:
    """A Secret or ConfigMap mounted read-only at a directory of the pod."""

    kind: str  # "secret" or "configmap"
    name: str
    path: str


@dataclass(frozen=True)
class RenderOptions:
    # what to run
    corefile: str | None = None           # a Corefile's path (None: generated from the plan)
    corefile_text: str | None = None      # or its text (Python callers); named `corefile` in errors
    plan: str | None = None
    cluster: str | None = None
    from_api: tuple[str, ...] = ()        # plan clusters served from their API instead of forwarded
    remote_dns: tuple[tuple[str, str], ...] = ()  # (cluster, address) overriding the plan's
    kubeconfigs: tuple[tuple[str, str], ...] = ()  # (cluster, local kubeconfig file) for the Secrets
    dns_port: int = 53
    # where and how
    name: str = "interkube"
    namespace: str = "interkube"
    image: str = DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    replicas: int = 2
    anti_affinity: str = "preferred"
    priority_class: str | None = "system-cluster-critical"
    cpu_request: str = "100m"
    memory_request: str = "128Mi"
    memory_limit: str = "256Mi"
    cpu_limit: str | None = None
    lameduck: float = 5.0                 # for a generated Corefile
    grace_period: int | None = None       # default: lameduck + GRACE_MARGIN
    hpa_max: int | None = None
    hpa_cpu: int = 70
    run_as_user: int = 65532
    mounts: tuple[Mount, ...] = ()
    # Service
    expose: str = "cluster-ip"
    cloud: str | None = None
    split_protocols: bool = False
    load_balancer_ip: str | None = None
    cluster_ip: str | None = None
    # DNS over TLS
    tls: bool = False
    mtls: bool = False
    issuer: str | None = None             # cert-manager issuer name
    issuer_kind: str = "ClusterIssuer"
    tls_secret: str | None = None         # a Secret filled by `interkube certs` (tls.crt, tls.key, ca.crt)
    client_tls_secret: str | None = None  # the local side's client certificate (mTLS)
    dot_front: bool = True                # with a plan and --tls: also the DoT front of this cluster
    allow: tuple[str, ...] = ()           # networks allowed to query (acl); default from the plan

    def __post_init__(self) -> None:
        check(self)


def check_label(what: str, value: str, longest: int = 63) -> None:
    """A DNS label, as namespace and Service names must be, of at most ``longest`` characters."""
    if not _LABEL.match(value) or len(value) > longest:
        raise RenderError(f"{what} {value!r} is not a DNS label of at most {longest} characters")


def check_quantity(what: str, quantity: str | None) -> None:
    """A Kubernetes resource quantity (or None: not given)."""
    if quantity is not None and not _QUANTITY.match(quantity):
        raise RenderError(f"{what} {quantity!r} is not a Kubernetes quantity (e.g. 100m, 128Mi)")


def check(o: RenderOptions) -> None:
    """Raise RenderError for values that cannot be rendered (before anything is read)."""
    # Other names are made from it (NAME-dot, NAME-kubeconfig-CLUSTER, NAME-udp): room for them.
    check_label("--name", o.name, 40)
    check_label("--namespace", o.namespace)
    if o.corefile is not None and o.corefile_text is not None:
        raise RenderError("give the Corefile as a file or as text, not both")
    if (o.corefile is not None or o.corefile_text is not None) and o.plan is not None:
        raise RenderError("-conf and --plan exclude each other: the plan generates the Corefile")
    if o.corefile is None and o.corefile_text is None and o.plan is None:
        raise RenderError("nothing to render: give -conf COREFILE or --plan PLAN --cluster NAME")
    if o.plan is not None and not o.cluster:
        raise RenderError("--plan needs --cluster NAME: the cluster these manifests are for")
    if o.replicas < 1:
        raise RenderError("--replicas must be at least 1")
    if o.hpa_max is not None and o.hpa_max < o.replicas:
        raise RenderError(f"--hpa-max {o.hpa_max} is below --replicas {o.replicas}")
    if not 1 <= o.hpa_cpu <= 100:
        raise RenderError("--hpa-cpu is a percentage of the CPU request, 1 to 100")
    if o.anti_affinity not in ANTI_AFFINITY:
        raise RenderError(f"--anti-affinity must be one of {', '.join(ANTI_AFFINITY)}")
    if o.expose not in EXPOSE:
        raise RenderError(f"--expose must be one of {', '.join(EXPOSE)}")
    if o.expose == "internal-lb" and o.cloud is None:
        raise RenderError("--expose internal-lb needs --cloud aws|gcp|azure: each names its internal "
                          "load balancer with its own annotations")
    if o.cloud is not None and o.cloud not in CLOUDS:
        raise RenderError(f"--cloud must be one of {', '.join(CLOUDS)}")
    if o.split_protocols:
        if o.expose != "internal-lb":
            raise RenderError("--split-protocols is for --expose internal-lb")
        if o.cloud == "aws":
            raise RenderError("--split-protocols: AWS load balancers cannot share one address between two "
                              "Services; the AWS load balancer controller serves TCP and UDP 53 on one NLB")
        if not o.load_balancer_ip:
            raise RenderError("--split-protocols needs --load-balancer-ip: two Services share an address "
                              "only when both ask for the same one")
    if o.mtls and not o.tls:
        raise RenderError("--mtls needs --tls")
    if o.issuer and o.tls_secret:
        raise RenderError("--issuer and --tls-secret exclude each other: certificates come from "
                          "cert-manager or from a Secret you fill")
    if o.tls and not (o.issuer or o.tls_secret):
        raise RenderError("--tls needs --issuer NAME (cert-manager) or --tls-secret NAME (filled from "
                          "`interkube certs`)")
    if o.issuer_kind not in ("ClusterIssuer", "Issuer"):
        raise RenderError("--issuer-kind must be ClusterIssuer or Issuer")
    quantities: tuple[tuple[str | None, str], ...] = (
        (o.cpu_request, "--cpu"), (o.memory_request, "--memory"), (o.memory_limit, "--memory-limit"),
        (o.cpu_limit, "--cpu-limit"))
    for quantity, what in quantities:
        check_quantity(what, quantity)
    if o.plan is not None and o.grace_period is not None and o.grace_period <= o.lameduck:
        raise RenderError(f"--grace-period {o.grace_period}s must exceed the lameduck ({o.lameduck:g}s): "
                          "the pod would be killed while still draining")
    if not 1 <= o.dns_port <= 65535:
        raise RenderError("--dns-port must be a port number")
    if (o.from_api or o.remote_dns) and o.plan is None:
        raise RenderError("--from-api and --remote-dns name clusters of a --plan")


# --- command line ----------------------------------------------------------------------------


def _pair(what: str) -> type:
    def parse(text: str) -> tuple[str, str]:
        key, sep, value = text.partition("=")
        if not sep or not key or not value:
            raise argparse.ArgumentTypeError(f"{what}: expected NAME=VALUE, not {text!r}")
        return key, value

    parse.__name__ = what
    return parse  # type: ignore[return-value]


def _mount(kind: str) -> type:
    def parse(text: str) -> Mount:
        name, sep, path = text.partition("=")
        if not sep or not _LABEL.match(name) or not path.startswith("/"):
            raise argparse.ArgumentTypeError(f"expected NAME=/DIR, not {text!r}")
        return Mount(kind, name, path.rstrip("/") or "/")

    parse.__name__ = f"--{kind}"
    return parse  # type: ignore[return-value]


def _seconds(text: str) -> float:
    try:
        value = float(text.removesuffix("s"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def add_workload_arguments(p: argparse.ArgumentParser) -> None:
    """Where and how the pods run: shared by every render that writes a Deployment."""
    p.add_argument("-o", "--output", metavar="DIR|-",
                   help="a kustomize directory to write (replaced whole), or - for one YAML stream on stdout")
    p.add_argument("--name", default=RenderOptions.name, help="name of every object (default %(default)s)")
    p.add_argument("--namespace", default=RenderOptions.namespace,
                   help="namespace of the objects (default %(default)s)")
    p.add_argument("--image", default=DEFAULT_IMAGE, help="container image (default %(default)s)")
    p.add_argument("--image-pull-policy", default="IfNotPresent", choices=("IfNotPresent", "Always", "Never"))
    p.add_argument("--replicas", type=int, default=RenderOptions.replicas, metavar="N",
                   help="pods (default %(default)s); the PodDisruptionBudget lets one go at a time")
    p.add_argument("--anti-affinity", choices=ANTI_AFFINITY, default=RenderOptions.anti_affinity,
                   help="keep replicas on different nodes: always (required) or when possible (default)")
    p.add_argument("--priority-class", default=RenderOptions.priority_class, metavar="NAME",
                   help="priorityClassName (default %(default)s; '' for none)")
    p.add_argument("--cpu", default=RenderOptions.cpu_request, metavar="Q", help="CPU request (default %(default)s)")
    p.add_argument("--cpu-limit", default=None, metavar="Q", help="CPU limit (default none: no throttling)")
    p.add_argument("--memory", default=RenderOptions.memory_request, metavar="Q",
                   help="memory request (default %(default)s)")
    p.add_argument("--memory-limit", default=RenderOptions.memory_limit, metavar="Q",
                   help="memory limit (default %(default)s)")
    p.add_argument("--grace-period", type=int, default=None, metavar="SECONDS",
                   help="terminationGracePeriodSeconds (default: health's lameduck + 10)")
    p.add_argument("--hpa-max", type=int, default=None, metavar="N",
                   help="add a HorizontalPodAutoscaler from --replicas up to N pods")
    p.add_argument("--hpa-cpu", type=int, default=RenderOptions.hpa_cpu, metavar="PERCENT",
                   help="the HPA's target CPU utilisation (default %(default)s)")
    p.add_argument("--run-as-user", type=int, default=RenderOptions.run_as_user, metavar="UID",
                   help="the non-root user the container runs as (default %(default)s)")
    p.add_argument("--secret", dest="mounts", action="append", type=_mount("secret"), default=[],
                   metavar="NAME=DIR", help="mount Secret NAME read-only at DIR (files the Corefile reads)")
    p.add_argument("--configmap", dest="mounts", action="append", type=_mount("configmap"),
                   metavar="NAME=DIR", help="mount ConfigMap NAME read-only at DIR")
    svc = p.add_argument_group("Service")
    svc.add_argument("--expose", choices=EXPOSE, default="cluster-ip",
                     help="cluster-ip (default) or an internal load balancer (needs --cloud)")
    svc.add_argument("--cloud", choices=CLOUDS, help="the cloud whose internal load balancer annotations to write")
    svc.add_argument("--split-protocols", action="store_true",
                     help="one Service for UDP and one for TCP sharing --load-balancer-ip, where a load "
                          "balancer cannot mix protocols")
    svc.add_argument("--load-balancer-ip", metavar="ADDRESS", help="ask the load balancer for this address")
    svc.add_argument("--cluster-ip", metavar="ADDRESS", help="a fixed ClusterIP for the Service")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Every option of ``interkube render`` (the server)."""
    src = p.add_argument_group("what to run")
    src.add_argument("-conf", "--conf", dest="corefile", metavar="COREFILE", help="the Corefile to deploy")
    src.add_argument("--plan", metavar="PLAN", help="generate the Corefile from this address plan (docs/netplan.md)")
    src.add_argument("--cluster", metavar="NAME", help="with --plan: the cluster these manifests are for")
    src.add_argument("--from-api", action="append", default=[], metavar="CLUSTER",
                     help="serve this plan cluster from its API (a kubeconfig Secret) instead of forwarding "
                          "to its DNS; 'all' for every other cluster; repeatable")
    src.add_argument("--remote-dns", action="append", type=_pair("--remote-dns"), default=[],
                     metavar="CLUSTER=ADDRESS", help="where a plan cluster's DNS (or DoT front) answers; "
                                                     "default: the plan's dns endpoints or service")
    src.add_argument("--kubeconfig", dest="kubeconfigs", action="append", type=_pair("--kubeconfig"), default=[],
                     metavar="CLUSTER=FILE", help="put FILE into the kubeconfig Secret of CLUSTER "
                                                  "(see `render remote-access`)")
    src.add_argument("--dns-port", type=int, default=53, metavar="PORT",
                     help="with --plan: the port the pods listen on (default 53)")
    src.add_argument("--lameduck", type=_seconds, default=RenderOptions.lameduck, metavar="SECONDS",
                     help="with --plan: health's lameduck (default %(default)ss)")
    src.add_argument("--allow", action="append", default=[], metavar="CIDR",
                     help="with --plan: networks allowed to query (default: the cluster's pods and nodes)")
    add_workload_arguments(p)
    dot = p.add_argument_group("DNS over TLS")
    dot.add_argument("--tls", action="store_true",
                     help="with --plan: forward to the other clusters' DoT fronts over tls:// and write this "
                          "cluster's DoT front")
    dot.add_argument("--mtls", action="store_true", help="mutual TLS: client_auth require_and_verify")
    dot.add_argument("--issuer", metavar="NAME", help="cert-manager issuer of the certificates")
    dot.add_argument("--issuer-kind", default="ClusterIssuer", choices=("ClusterIssuer", "Issuer"))
    dot.add_argument("--tls-secret", metavar="NAME",
                     help="the DoT server certificate's Secret (tls.crt, tls.key, ca.crt), e.g. from `interkube certs`")
    dot.add_argument("--client-tls-secret", metavar="NAME",
                     help="with --mtls and --tls-secret: the client certificate's Secret")
    dot.add_argument("--no-dot-front", dest="dot_front", action="store_false",
                     help="with --tls: leave out this cluster's DoT front")


def from_args(args: argparse.Namespace) -> RenderOptions:
    """RenderOptions from parsed arguments (RenderError for values that do not fit)."""
    return RenderOptions(
        corefile=args.corefile, plan=args.plan, cluster=args.cluster, from_api=tuple(args.from_api),
        remote_dns=tuple(args.remote_dns), kubeconfigs=tuple(args.kubeconfigs), dns_port=args.dns_port,
        lameduck=args.lameduck, allow=tuple(args.allow),
        tls=args.tls, mtls=args.mtls, issuer=args.issuer, issuer_kind=args.issuer_kind,
        tls_secret=args.tls_secret, client_tls_secret=args.client_tls_secret, dot_front=args.dot_front,
        **workload_kwargs(args))


def workload_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        name=args.name, namespace=args.namespace, image=args.image, image_pull_policy=args.image_pull_policy,
        replicas=args.replicas, anti_affinity=args.anti_affinity, priority_class=args.priority_class or None,
        cpu_request=args.cpu, cpu_limit=args.cpu_limit, memory_request=args.memory,
        memory_limit=args.memory_limit, grace_period=args.grace_period, hpa_max=args.hpa_max,
        hpa_cpu=args.hpa_cpu, run_as_user=args.run_as_user, mounts=tuple(args.mounts), expose=args.expose,
        cloud=args.cloud, split_protocols=args.split_protocols, load_balancer_ip=args.load_balancer_ip,
        cluster_ip=args.cluster_ip)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise RenderError(message)


def parse(argv: Sequence[str]) -> RenderOptions:
    """RenderOptions from command-line words (``-o`` may be left out): for Python callers."""
    p = _Parser(prog="interkube render", add_help=False, allow_abbrev=False)
    add_arguments(p)
    words = list(argv)
    if "-o" not in words and "--output" not in words:
        words += ["-o", "-"]
    return from_args(p.parse_args(words))


__all__ = ["DEFAULT_IMAGE", "Mount", "RenderError", "RenderOptions", "add_arguments", "from_args", "parse"]
