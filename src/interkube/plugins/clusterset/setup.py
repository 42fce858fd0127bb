"""Wire a `clusterset` stanza: its zones, the clusters it merges (the block's kubernetes stanzas)."""

from __future__ import annotations

from interkube.kube.registry import cluster_registry
from interkube.plugins.clusterset.handler import ClustersetHandler, ClustersetStats
from interkube.plugins.clusterset.parse import ClustersetConfig
from interkube.plugins.kubernetes.handler import KubernetesHandler
from interkube.plugins.kubernetes.setup import GROUP_KEY
from interkube.server.plugin import SetupContext


def setup(cfg: ClustersetConfig, ctx: SetupContext) -> ClustersetHandler:
    zones = cfg.zones or ctx.zones
    # The kubernetes stanzas of this server block were set up first (they run earlier in the
    # chain), so the clusters they serve are known here by name.
    stanzas: list[KubernetesHandler] = ctx.block.extra.get(GROUP_KEY, [])
    served = [h.cluster.name for h in stanzas]
    if not served:
        raise ctx.error("needs the clusters' `kubernetes` stanzas in the same server block")
    clusters = cfg.clusters or tuple(dict.fromkeys(served))
    for name in clusters:
        if name not in served:
            raise ctx.error(f"no kubernetes stanza of this server block serves the cluster "
                            f"{name!r} (they serve {', '.join(served)}; see their `cluster NAME`)")
    if cfg.local is not None and cfg.local not in clusters:
        raise ctx.error(f"local {cfg.local!r} is not among the clusters ({', '.join(clusters)})")
    lowered = [name.lower() for name in clusters]
    if len(set(lowered)) != len(lowered):
        raise ctx.error("two clusters' names differ only in case; DNS names cannot tell them apart")
    stats = ctx.services.share(("clusterset", zones), ClustersetStats)
    return ClustersetHandler(cfg, zones, clusters, cluster_registry(ctx.services), stats, ctx.services.metrics)
