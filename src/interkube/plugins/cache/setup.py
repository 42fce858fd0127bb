"""Wire `cache`: the block's zones unless the directive names its own, the metrics source."""

from __future__ import annotations

from interkube.plugin.setup import SetupContext
from interkube.plugins.cache.handler import CACHE_STATS, CacheHandler, CacheStats
from interkube.plugins.cache.parse import CacheConfig


def setup(cfg: CacheConfig, ctx: SetupContext) -> CacheHandler:
    zones = cfg.zones or ctx.zones
    server = ctx.server_label
    # Counters live as long as the process (a reload keeps them), one set per server and zones.
    stats = ctx.services.shared.get_or_create(CACHE_STATS, (server, zones), CacheStats)
    handler = CacheHandler(cfg, zones, server=server, metrics=ctx.services.metrics, stats=stats)
    ctx.on_startup(handler.start)
    ctx.on_shutdown(handler.stop)
    return handler
