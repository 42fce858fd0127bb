"""Wire a `kubernetes` stanza: its zones and cluster name, its source, its handler.

Setup reads what can be wrong in files (the kubeconfig and its certificates, the snapshot
files) so that a mistake stops the configuration with the Corefile line and the file's own
words; contacting the API waits for the handler's start.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import subprocess

from interkube.errors import KubeError
from interkube.kube.access import ApiAccess
from interkube.kube.cluster import Cluster, Source
from interkube.kube.filters import Filters
from interkube.kube.live import live_source
from interkube.kube.registry import cluster_registry
from interkube.kube.shared import shared_source
from interkube.kube.snapshot import SnapshotSource
from interkube.pkg.netif import interface_addresses
from interkube.pkg.shared import Kind
from interkube.plugin.setup import SetupContext
from interkube.plugins.kubernetes.handler import KubernetesHandler, StanzaGroup
from interkube.plugins.kubernetes.lookup import Options
from interkube.plugins.kubernetes.parse import KubernetesConfig

log = logging.getLogger("interkube.plugin.kubernetes")

#: The kubernetes stanzas of one server block (their clusters start together).
BLOCK_STANZAS = Kind("the kubernetes stanzas of a server block", StanzaGroup)


class StanzaClaims(dict[str, tuple[object, object, str, str]]):
    """Cluster name -> (configuration, source key, source description, file:line) of the last
    stanza set up with that name, so that two stanzas of one configuration that give one name
    to two sources are refused at the second one's line, before anything starts."""


STANZA_CLAIMS = Kind("the cluster names claimed by kubernetes stanzas", StanzaClaims)


def claim(ctx: SetupContext, name: str, source: Source, where: str) -> None:
    claims = ctx.services.shared.get_or_create(STANZA_CLAIMS, None, StanzaClaims)
    first = claims.get(name)
    if first is not None and first[0] is ctx.configuration and first[1] != source.key:
        raise ctx.error(f"two kubernetes stanzas serve the cluster name {name!r} from different sources "
                        f"({first[2]} and {source.description}); give one a `cluster NAME` of its own "
                        f"(first at {first[3]})")
    claims[name] = (ctx.configuration, source.key, source.description, where)


def is_reverse(zone: str) -> bool:
    return zone.endswith(("in-addr.arpa.", "ip6.arpa."))


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


def setup(cfg: KubernetesConfig, ctx: SetupContext) -> KubernetesHandler:
    zones = cfg.zones or ctx.zones
    primary = next((z for z in zones if not is_reverse(z)), None)
    if primary is None:
        raise ctx.error("needs a zone that is not a reverse zone (PTR answers are named in it)")
    name = cluster_name(cfg, zones)
    registry = cluster_registry(ctx.services.shared, ctx.services.metrics)
    filters = Filters(namespaces=cfg.namespaces, selector=cfg.labels, pods=cfg.pods == "verified",
                      endpoints=not cfg.noendpoints)
    source: Source
    if cfg.snapshot:
        source = SnapshotSource(cfg.snapshot, filters, max_drop=cfg.snapshot_max_drop)
    else:
        if cfg.kubeconfig and cfg.endpoint:
            log.warning("%s: `kubeconfig` is used and `endpoint` is ignored (as CoreDNS does)", cfg.where)
        access = ApiAccess(kubeconfig=os.path.abspath(cfg.kubeconfig) if cfg.kubeconfig else None,
                           context=cfg.context, endpoint=None if cfg.kubeconfig else cfg.endpoint,
                           tls=None if cfg.kubeconfig else cfg.tls)
        source = live_source(access, filters, name)
        worker = ctx.services.worker
        if worker is not None and worker.shared_watch:
            source = shared_source(source, name, worker)
    claim(ctx, name, source, cfg.where)
    cluster = registry.running(name, source.key)
    if cluster is None:
        cluster = Cluster(name, source, registry.stats(name))
        if isinstance(source, SnapshotSource):
            try:
                cluster.preload(source.load(cluster))
            except KubeError as exc:
                raise ctx.error(str(exc)) from exc
    options = Options(ttl=cfg.ttl, pods=cfg.pods, endpoint_pod_names=cfg.endpoint_pod_names,
                      ignore_empty_service=cfg.ignore_empty_service, primary_zone=primary,
                      local_ips=local_addresses(ctx.block.bind))
    group = ctx.block.shared.get_or_create(BLOCK_STANZAS, None, StanzaGroup)
    handler = KubernetesHandler(cfg, zones, options, cluster, registry, ctx.configuration, group)
    group.handlers.append(handler)
    ctx.block.clusters.append(name)
    ctx.on_startup(handler.start)
    ctx.on_shutdown(handler.stop)
    ctx.readiness(handler.readiness)
    return handler
