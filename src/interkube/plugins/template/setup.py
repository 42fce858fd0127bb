"""Wire `template`: one handler per directive; several in a block run in Corefile order, as the
templates of one CoreDNS template handler do."""

from __future__ import annotations

from interkube.plugin.setup import SetupContext
from interkube.plugins.template.handler import TEMPLATE_STATS, TemplateStats, TemplatingHandler
from interkube.plugins.template.parse import TemplateConfig


def setup(cfg: TemplateConfig, ctx: SetupContext) -> TemplatingHandler:
    shared = ctx.services.shared
    stats = shared.get(TEMPLATE_STATS)
    if stats is None:
        # One set of counts per process, published from the first template on (as CoreDNS's
        # package-level counters): reloads keep counting into it.
        stats = TemplateStats()
        shared.put(TEMPLATE_STATS, None, stats)
        ctx.services.metrics.add_source(stats, stats.collect)
    return TemplatingHandler(cfg, cfg.zones or ctx.zones, ctx.server_label, stats)
