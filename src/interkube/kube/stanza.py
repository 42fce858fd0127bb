"""A ``kubernetes [ZONES...] { ... }`` stanza (also written ``kubernetai``): CoreDNS's options
plus ``snapshot`` and ``cluster``, parsed; and the few rules setup applies to one (its cluster's
name, its reverse zones, the server's own addresses for NS records).

Shared by the *kubernetes* and *kubernetai* plugins, whose stanzas mean the same (kubernetai is
CoreDNS's external plugin for several clusters per server block): the parser takes the plugin's
name for its messages.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

from interkube.corefile.lexer import Token
from interkube.corefile.parser import Directive
from interkube.errors import ConfigError
from interkube.kube.dnsrecords import DEFAULT_TTL, MAX_TTL
from interkube.kube.labels import EVERYTHING, Selector, SelectorError, parse_selector
from interkube.kube.registry import CLUSTER_NAME
from interkube.kube.snapshot import DEFAULT_MAX_DROP
from interkube.pkg import args
from interkube.pkg import fallthrough as fall
from interkube.pkg.netif import interface_addresses

POD_MODES = ("disabled", "insecure", "verified")
#: CoreDNS's default (plugin/kubernetes): 5 s to wait for a first sync.
DEFAULT_STARTUP_TIMEOUT = 5.0

#: CoreDNS options this build does not implement, and what to say about each.
NOT_SUPPORTED = {
    "namespace_labels": "filtering namespaces by label needs a watch on Namespaces, which interkube does not keep",
    "transfer": "removed from CoreDNS; zone transfers are the transfer plugin's (`transfer { to ADDRESS }` in the "
                "server block)",
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
    #: The zones served by the MCS specification (``clusterset.local``), among the stanza's.
    multicluster: tuple[str, ...] = ()
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
    multicluster: tuple[str, ...]


def parse_stanza(d: Directive, plugin: str = "kubernetes") -> KubernetesConfig:
    """A stanza of ``plugin`` (kubernetes or kubernetai; its name is in the messages)."""
    zones = args.zones(d.args)
    values: _Options = {}
    seen: dict[str, str] = {}
    for opt in args.single_options(d, plugin, seen):
        name = opt.name
        if name == "kubeconfig":
            a = args.nargs(opt, 1, 2)
            values["kubeconfig"] = a[0].text
            values["context"] = a[1].text if len(a) > 1 else None
        elif name == "endpoint":
            values["endpoint"] = _endpoint(opt, plugin)
        elif name == "tls":
            cert, key, ca = (t.text for t in args.nargs(opt, 3, 3))
            values["tls"] = (cert, key, ca)
        elif name == "snapshot":
            values["snapshot"] = tuple(t.text for t in args.nargs(opt, 1))
        elif name == "snapshot_max_drop":
            values["snapshot_max_drop"] = _percentage(args.nargs(opt, 1, 1)[0], "snapshot_max_drop", plugin)
        elif name == "cluster":
            tok = args.nargs(opt, 1, 1)[0]
            if not CLUSTER_NAME.fullmatch(tok.text):
                raise tok.error(f"{plugin}: cluster name {tok.text!r} may hold only letters, digits, "
                                "'-', '_' and '.', and must start and end with a letter or digit")
            values["cluster"] = tok.text
        elif name == "namespaces":
            values["namespaces"] = frozenset(t.text for t in args.nargs(opt, 1))
        elif name == "labels":
            text = " ".join(t.text for t in args.nargs(opt, 1))
            try:
                values["labels"] = parse_selector(text)
            except SelectorError as exc:
                raise opt.token.error(f"{plugin}: labels: {exc}") from None
        elif name == "pods":
            tok = args.nargs(opt, 1, 1)[0]
            if tok.text not in POD_MODES:
                raise tok.error(f"{plugin}: pods must be one of {', '.join(POD_MODES)}, not {tok.text!r}")
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
                raise tok.error(f"{plugin}: ignore takes empty_service, not {tok.text!r}")
            values["ignore_empty_service"] = True
        elif name == "startup_timeout":
            values["startup_timeout"] = args.duration(args.nargs(opt, 1, 1)[0])
        elif name == "multicluster":
            args.no_block(opt)
            values["multicluster"] = args.zones(opt.args)
            if zones:
                check_multicluster(values["multicluster"], zones, opt.error)
        elif name in NOT_SUPPORTED:
            raise opt.token.error(f"{plugin}: option {name!r} is not supported: {NOT_SUPPORTED[name]}")
        else:
            raise args.unknown_option(opt, plugin)
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


def _percentage(tok: Token, what: str, plugin: str) -> int:
    """``N%``, 0 to 100, written as CoreDNS writes percentages (cache's ``prefetch ... 10%``)."""
    text = tok.text
    if not text.endswith("%") or not text[:-1].isdigit():
        raise tok.error(f"{plugin}: {what} takes a percentage such as 50%, not {text!r}")
    value = int(text[:-1])
    if value > 100:
        raise tok.error(f"{plugin}: {what} {value}% is above 100%")
    return value


def _endpoint(opt: Directive, plugin: str) -> str:
    a = args.nargs(opt, 1)
    if len(a) > 1:
        # CoreDNS deprecated several endpoints and uses the first; a list here would silently
        # ignore the rest, so it is an error.
        raise a[1].error(f"{plugin}: endpoint takes one URL (several endpoints are not supported)")
    url = a[0].text
    if not re.match(r"https?://[^/]+", url):
        raise a[0].error(f"{plugin}: endpoint {url!r} is not an http(s):// URL")
    return url


def is_reverse(zone: str) -> bool:
    return zone.endswith(("in-addr.arpa.", "ip6.arpa."))


def check_multicluster(multicluster: tuple[str, ...], zones: tuple[str, ...],
                       error: Callable[[str], ConfigError]) -> None:
    """The MCS zones must be zones the stanza serves (as CoreDNS requires), and not reverse ones."""
    for zone in multicluster:
        if zone not in zones:
            raise error(f"zone {zone} is not one of the stanza's zones ({' '.join(zones)}); a multicluster "
                        "zone must be served by its stanza")
        if is_reverse(zone):
            raise error(f"zone {zone} is a reverse zone; a multicluster zone holds Services")


def cluster_name(cfg: KubernetesConfig, zones: tuple[str, ...]) -> str:
    """`cluster NAME`, else the kubeconfig context, else NAME of a first zone `cluster.NAME`,
    else the first zone (without its final dot)."""
    if cfg.cluster:
        return cfg.cluster
    if cfg.context:
        return cfg.context
    first = zones[0].rstrip(".")
    if first.startswith("cluster.") and len(first) > len("cluster."):
        return first[len("cluster."):]
    return first or "."


def local_addresses(bound: tuple[str, ...]) -> tuple[str, ...]:
    """This server's own non-loopback addresses, for the zone's NS records.

    As CoreDNS: the addresses the block listens on, or every interface's when it listens on
    all; loopback addresses never count (a client cannot reach a name server there).
    """
    candidates: list[str] = list(bound)
    if not candidates:
        for _, name in socket.if_nameindex():
            try:
                candidates.extend(interface_addresses(name))
            except (LookupError, OSError, subprocess.CalledProcessError):
                continue
    out: list[str] = []
    for text in candidates:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            continue
        if not address.is_loopback and not address.is_link_local and str(address) not in out:
            out.append(str(address))
    return tuple(out)
