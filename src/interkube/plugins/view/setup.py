"""Wire `view`: the block's condition, read by the runtime when it routes the zone's queries,
and the `view/name` metadata label."""

from __future__ import annotations

from interkube.plugin import metadata
from interkube.plugin.request import Request
from interkube.plugin.setup import SetupContext, View
from interkube.plugins.view.filter import ViewCondition
from interkube.plugins.view.parse import ViewConfig


def setup(cfg: ViewConfig, ctx: SetupContext) -> None:
    name = cfg.name

    def provide(req: Request) -> None:
        metadata.set_value(req, "view/name", name)

    providers = metadata.providers(ctx.block.shared)
    providers.append(provide)
    # Without *metadata* in the block, metadata() reads nothing, as in CoreDNS.
    collect = providers if "metadata" in ctx.block.plugins else None
    ctx.block.view = View(name, ViewCondition(cfg.programs, collect).accepts)
