"""Wire `autopath`: a search list read from a file now, or asked of the plugin named by `@PLUGIN`.

``@PLUGIN``'s plugin is set up after autopath (it comes later in the chain), so its search-list
sources are looked up once the whole server block is set up (``on_configured``). As in CoreDNS,
naming a plugin that the block does not have leaves autopath with nothing to do (a warning says
so), and naming one that gives no search lists is a configuration error.
"""

from __future__ import annotations

import logging

from interkube.plugin.request import Request
from interkube.plugin.searchpath import SearchPath, read_search, search_path_sources
from interkube.plugin.setup import SetupContext
from interkube.plugins.autopath.handler import AUTOPATH_STATS, AutopathHandler, AutopathStats
from interkube.plugins.autopath.parse import AutopathConfig

log = logging.getLogger("interkube.plugin.autopath")


def _stats(ctx: SetupContext) -> AutopathStats:
    """The process's counts (CoreDNS's is a package-level counter): published from the first
    autopath on, counted into by every reload's."""
    def make() -> AutopathStats:
        stats = AutopathStats()
        ctx.services.metrics.add_source(stats, stats.collect)
        return stats

    return ctx.services.shared.get_or_create(AUTOPATH_STATS, None, make)


def _nobody(_: Request) -> SearchPath | None:
    return None


def setup(cfg: AutopathConfig, ctx: SetupContext) -> AutopathHandler | None:
    zones = cfg.zones or ctx.zones
    if cfg.plugin:
        if cfg.plugin not in ctx.block.plugins:
            log.warning("%s: autopath @%s: the server block has no %s plugin, so autopath does nothing "
                        "(as CoreDNS)", cfg.where, cfg.plugin, cfg.plugin)
            return None
        handler = AutopathHandler(zones, _nobody, _stats(ctx).cell(ctx.server_label))
        sources = search_path_sources(ctx.block.shared)

        def resolve() -> None:
            found = sources.of(cfg.plugin)
            if not found:
                raise ctx.error(f"{cfg.plugin} gives no search paths (kubernetes does, with `pods verified`)")
            handler.search = AutopathHandler.first_source(found)

        ctx.on_configured(resolve)
        return handler
    try:
        domains = read_search(cfg.resolv_conf)
    except OSError as exc:
        raise ctx.error(f"failed to read {cfg.resolv_conf!r}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ctx.error(f"{cfg.resolv_conf}: {exc}") from exc
    if not domains:
        log.warning("%s: autopath: %s has no search list, so autopath does nothing", cfg.where, cfg.resolv_conf)
        return None
    path = SearchPath(domains)
    return AutopathHandler(zones, lambda _req: path, _stats(ctx).cell(ctx.server_label))
