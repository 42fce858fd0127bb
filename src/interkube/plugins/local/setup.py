"""Wire `local`: one counter for the process, published from the first setup on (CoreDNS's is
a package-level counter)."""

from interkube.plugin.setup import SetupContext
from interkube.plugins.local.handler import LOCAL_STATS, LocalHandler, LocalStats
from interkube.plugins.local.parse import LocalConfig


def setup(cfg: LocalConfig, ctx: SetupContext) -> LocalHandler:
    shared = ctx.services.shared
    stats = shared.get(LOCAL_STATS)
    if stats is None:
        stats = LocalStats()
        shared.put(LOCAL_STATS, None, stats)
        ctx.services.metrics.add_source(stats, stats.collect)
    return LocalHandler(cfg, stats)
