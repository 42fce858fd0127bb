"""Parse a ``kubernetes [ZONES...] { ... }`` stanza: CoreDNS's options plus ``snapshot`` and ``cluster``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypedDict

from interkube.corefile.lexer import Token
from interkube.corefile.parser import Directive
from interkube.kube.dnsrecords import DEFAULT_TTL, MAX_TTL
from interkube.kube.labels import EVERYTHING, Selector, SelectorError, parse_selector
from interkube.kube.registry import CLUSTER_NAME
from interkube.kube.snapshot import DEFAULT_MAX_DROP
from interkube.pkg import args
from interkube.pkg import fallthrough as fall

POD_MODES = ("disabled", "insecure", "verified")
#: CoreDNS's default (plugin/kubernetes): 5 s to wait for a first sync.
DEFAULT_STARTUP_TIMEOUT = 5.0

#: CoreDNS options this build does not implement, and what to say about each.
NOT_SUPPORTED = {
    "namespace_labels": "filtering namespaces by label needs a watch on Namespaces, which interkube does not keep",
    "multicluster": "MCS zones are served by the `clusterset` plugin",
    "transfer": "zone transfers of Kubernetes zones are not supported",
    "resyncperiod": "removed from CoreDNS; watches need no resync",
    "upstream": "removed from CoreDNS; ExternalName targets are left to the resolver",
    "apiserver_qps": "client rate limits are not supported",
    "apiserver_burst": "client rate limits are not supported",
    "apiserver_max_inflight": "client rate limits are not supported",
    "zonal": "zone-scoped names of headless Services are not supported",
}


@dataclass(frozen=True)
class KubernetesConfig:
    zones: tuple[str, ...] = ()                 # empty: the server block's zones
    kubeconfig: str | None = None
    context: str | None = None
    endpoint: str | None = None
    tls: tuple[str, str, str] | None = None     # client cert, client key, CA cert
    snapshot: tuple[str, ...] = ()
    snapshot_max_drop: int = DEFAULT_MAX_DROP   # percent of the objects a reload may remove
    cluster: str | None = None
    namespaces: frozenset[str] = frozenset()
    labels: Selector = EVERYTHING
    pods: str = "disabled"
    endpoint_pod_names: bool = False
    ttl: int = DEFAULT_TTL
    noendpoints: bool = False
    fallthrough: fall.Fallthrough = fall.NEVER
    ignore_empty_service: bool = False
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    where: str = ""                             # the directive's file:line, for messages


class _Options(TypedDict, total=False):
    """The options a stanza sets, under their KubernetesConfig field names."""

    kubeconfig: str
    context: str | None
    endpoint: str
    tls: tuple[str, str, str]
    snapshot: tuple[str, ...]
    snapshot_max_drop: int
    cluster: str
    namespaces: frozenset[str]
    labels: Selector
    pods: str
    endpoint_pod_names: bool
    ttl: int
    noendpoints: bool
    fallthrough: fall.Fallthrough
    ignore_empty_service: bool
    startup_timeout: float


def parse(d: Directive) -> KubernetesConfig:
    zones = args.zones(d.args)
    values: _Options = {}
    seen: dict[str, str] = {}
    for opt in args.single_options(d, "kubernetes", seen):
        name = opt.name
        if name == "kubeconfig":
            a = args.nargs(opt, 1, 2)
            values["kubeconfig"] = a[0].text
            values["context"] = a[1].text if len(a) > 1 else None
        elif name == "endpoint":
            values["endpoint"] = _endpoint(opt)
        elif name == "tls":
            cert, key, ca = (t.text for t in args.nargs(opt, 3, 3))
            values["tls"] = (cert, key, ca)
        elif name == "snapshot":
            values["snapshot"] = tuple(t.text for t in args.nargs(opt, 1))
        elif name == "snapshot_max_drop":
            values["snapshot_max_drop"] = _percentage(args.nargs(opt, 1, 1)[0], "snapshot_max_drop")
        elif name == "cluster":
            tok = args.nargs(opt, 1, 1)[0]
            if not CLUSTER_NAME.fullmatch(tok.text):
                raise tok.error(f"kubernetes: cluster name {tok.text!r} may hold only letters, digits, "
                                "'-', '_' and '.', and must start and end with a letter or digit")
            values["cluster"] = tok.text
        elif name == "namespaces":
            values["namespaces"] = frozenset(t.text for t in args.nargs(opt, 1))
        elif name == "labels":
            text = " ".join(t.text for t in args.nargs(opt, 1))
            try:
                values["labels"] = parse_selector(text)
            except SelectorError as exc:
                raise opt.token.error(f"kubernetes: labels: {exc}") from None
        elif name == "pods":
            tok = args.nargs(opt, 1, 1)[0]
            if tok.text not in POD_MODES:
                raise tok.error(f"kubernetes: pods must be one of {', '.join(POD_MODES)}, not {tok.text!r}")
            values["pods"] = tok.text
        elif name == "endpoint_pod_names":
            args.nargs(opt, 0, 0)
            values["endpoint_pod_names"] = True
        elif name == "ttl":
            values["ttl"] = args.integer(args.nargs(opt, 1, 1)[0], 0, MAX_TTL, what="ttl")
        elif name == "noendpoints":
            args.nargs(opt, 0, 0)
            values["noendpoints"] = True
        elif name == "fallthrough":
            values["fallthrough"] = fall.parse(opt)
        elif name == "ignore":
            tok = args.nargs(opt, 1, 1)[0]
            if tok.text != "empty_service":
                raise tok.error(f"kubernetes: ignore takes empty_service, not {tok.text!r}")
            values["ignore_empty_service"] = True
        elif name == "startup_timeout":
            values["startup_timeout"] = args.duration(args.nargs(opt, 1, 1)[0])
        elif name in NOT_SUPPORTED:
            raise opt.token.error(f"kubernetes: option {name!r} is not supported: {NOT_SUPPORTED[name]}")
        else:
            raise args.unknown_option(opt, "kubernetes")
    if "snapshot" in values:
        for other in ("kubeconfig", "endpoint", "tls"):
            if other in values:
                raise d.error(f"`snapshot` reads the cluster from files; it cannot go with `{other}` "
                              f"(at {seen[other]})")
    if "snapshot_max_drop" in values and "snapshot" not in values:
        raise d.error(f"`snapshot_max_drop` (at {seen['snapshot_max_drop']}) is for `snapshot` files")
    if "tls" in values and "endpoint" not in values and "kubeconfig" not in values:
        raise d.error("`tls` is for an `endpoint`: name the API server with `endpoint URL`")
    return KubernetesConfig(zones=zones, where=d.where, **values)


def _percentage(tok: Token, what: str) -> int:
    """``N%``, 0 to 100, written as CoreDNS writes percentages (cache's ``prefetch ... 10%``)."""
    text = tok.text
    if not text.endswith("%") or not text[:-1].isdigit():
        raise tok.error(f"kubernetes: {what} takes a percentage such as 50%, not {text!r}")
    value = int(text[:-1])
    if value > 100:
        raise tok.error(f"kubernetes: {what} {value}% is above 100%")
    return value


def _endpoint(opt: Directive) -> str:
    a = args.nargs(opt, 1)
    if len(a) > 1:
        # CoreDNS deprecated several endpoints and uses the first; a list here would silently
        # ignore the rest, so it is an error.
        raise a[1].error("kubernetes: endpoint takes one URL (several endpoints are not supported)")
    url = a[0].text
    if not re.match(r"https?://[^/]+", url):
        raise a[0].error(f"kubernetes: endpoint {url!r} is not an http(s):// URL")
    return url
