"""Wire a `clusterset` stanza: its zones, the clusters it merges (the block's kubernetes stanzas)."""

from __future__ import annotations

from interkube.kube.registry import cluster_registry
from interkube.plugin.setup import SetupContext
from interkube.plugins.clusterset.handler import CLUSTERSET_STATS, ClustersetHandler, ClustersetStats
from interkube.plugins.clusterset.parse import ClustersetConfig


def setup(cfg: ClustersetConfig, ctx: SetupContext) -> ClustersetHandler:
    zones = cfg.zones or ctx.zones
    # The kubernetes stanzas of this server block were set up first (they run earlier in the
    # chain), so the clusters they serve are known here by name.
    served = ctx.block.clusters
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
    stats = ctx.services.shared.get_or_create(CLUSTERSET_STATS, zones, ClustersetStats)
    registry = cluster_registry(ctx.services.shared, ctx.services.metrics)
    handler = ClustersetHandler(cfg, zones, clusters, registry, stats, ctx.services.metrics)
    ctx.on_startup(handler.start)
    ctx.on_shutdown(handler.stop)
    ctx.readiness(handler.readiness)
    return handler
